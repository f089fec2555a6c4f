#pragma once

#include <eventlog/core/error.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace eventlog::clickhouse {

/// ClickHouse server error codes this library classifies explicitly (see ClassifyServerError).
namespace error_code {
inline constexpr int kCannotParseText = 6;
inline constexpr int kNotFoundColumnInBlock = 10;
inline constexpr int kNoSuchColumnInTable = 16;
inline constexpr int kCannotParseQuotedString = 26;
inline constexpr int kCannotParseInputAssertionFailed = 27;
inline constexpr int kCannotReadAllData = 33;
inline constexpr int kCannotParseDate = 38;
inline constexpr int kCannotParseDateTime = 41;
inline constexpr int kUnknownIdentifier = 47;
inline constexpr int kTypeMismatch = 53;
inline constexpr int kUnknownTable = 60;
inline constexpr int kArgumentOutOfBound = 69;
inline constexpr int kCannotConvertType = 70;
inline constexpr int kCannotParseNumber = 72;
inline constexpr int kUnknownDatabase = 81;
inline constexpr int kUnknownSetting = 115;
inline constexpr int kIncorrectData = 117;
inline constexpr int kTooLargeStringSize = 131;
inline constexpr int kTimeoutExceeded = 159;
inline constexpr int kReadonly = 164;
inline constexpr int kUnknownUser = 192;
inline constexpr int kWrongPassword = 193;
inline constexpr int kRequiredPassword = 194;
inline constexpr int kIpAddressNotAllowed = 195;
inline constexpr int kTooManySimultaneousQueries = 202;
inline constexpr int kSocketTimeout = 209;
inline constexpr int kNetworkError = 210;
inline constexpr int kMemoryLimitExceeded = 241;
inline constexpr int kNotEnoughSpace = 243;
inline constexpr int kTooManyParts = 252;
inline constexpr int kDatabaseAccessDenied = 291;
inline constexpr int kValueIsOutOfRangeOfDataType = 321;
inline constexpr int kQueryWasCancelled = 394;
inline constexpr int kFunctionThrowIfValueIsNonZero = 395;
inline constexpr int kAccessDenied = 497;
inline constexpr int kAuthenticationFailed = 516;
}  // namespace error_code

/// Extracts NNN from a ClickHouse error body: "Code: NNN, e.displayText() = ..." (18.x) or "Code: NNN. DB::..."
/// (modern).
std::optional<int> ParseServerErrorCode(std::string_view body);

/// Maps a server error code to a retry class; `is_insert` turns timeouts/cancellations into kInDoubt.
ErrorKind ClassifyServerError(int code, bool is_insert);

/// The symbolic name of a classified code ("UNKNOWN_TABLE"), or "" for codes this library does not know.
std::string_view ServerErrorName(int code);

/// True for the codes that mean the credentials were refused (192, 193, 194, 516).
bool IsAuthenticationError(int code);

/// Throws the eventlog::Error subclass matching `kind` with `message`; a non-empty `code` (the server's code, or
/// "HTTP nnn") is recorded with source kClickHouse.
[[noreturn]] void ThrowError(ErrorKind kind, const std::string& message, const std::string& code = {});

/// An error message as it may be shown to API users and stored with a dead letter: without the "ClickHouse <url>
/// (insert into <table>): " prefix this client puts in front of the server's answer (the URL names the server, the
/// table a relay's internal stage). Other messages are returned unchanged.
std::string WithoutEndpoint(std::string_view message);

/// True when `error` came from ClickHouse with a cause this library does not classify (an unknown numeric code,
/// or an HTTP status without one, e.g. a proxy's 429). The relay decides what that means for the rows
/// (relay/detail/retry_policy.hpp: a status without a code is a refusal, an unknown code needs evidence).
bool IsUnknownServerError(const Error& error);

}  // namespace eventlog::clickhouse
