#include <eventlog/clickhouse/errors.hpp>

namespace eventlog::clickhouse {

namespace {

struct KnownCode {
    int code;
    std::string_view name;
    ErrorKind kind;         // classification for a non-insert query
    ErrorKind insert_kind;  // classification for an INSERT
};

constexpr ErrorKind kT = ErrorKind::kTransient;
constexpr ErrorKind kD = ErrorKind::kInDoubt;
constexpr ErrorKind kR = ErrorKind::kRejected;
constexpr ErrorKind kC = ErrorKind::kConfiguration;

constexpr KnownCode kKnownCodes[] = {
    {6, "CANNOT_PARSE_TEXT", kR, kR},
    {10, "NOT_FOUND_COLUMN_IN_BLOCK", kC, kC},  // the target gained a column after the relay's stage was made
    {16, "NO_SUCH_COLUMN_IN_TABLE", kC, kC},
    {26, "CANNOT_PARSE_QUOTED_STRING", kR, kR},
    {27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", kR, kR},
    {33, "CANNOT_READ_ALL_DATA", kR, kR},
    {38, "CANNOT_PARSE_DATE", kR, kR},
    {41, "CANNOT_PARSE_DATETIME", kR, kR},
    {47, "UNKNOWN_IDENTIFIER", kC, kC},
    {53, "TYPE_MISMATCH", kR, kR},
    {60, "UNKNOWN_TABLE", kC, kC},
    {69, "ARGUMENT_OUT_OF_BOUND", kR, kR},
    {70, "CANNOT_CONVERT_TYPE", kR, kR},
    {72, "CANNOT_PARSE_NUMBER", kR, kR},
    {81, "UNKNOWN_DATABASE", kC, kC},
    {115, "UNKNOWN_SETTING", kC, kC},
    {117, "INCORRECT_DATA", kR, kR},
    {131, "TOO_LARGE_STRING_SIZE", kR, kR},
    {159, "TIMEOUT_EXCEEDED", kT, kD},
    {164, "READONLY", kC, kC},
    {192, "UNKNOWN_USER", kC, kC},
    {193, "WRONG_PASSWORD", kC, kC},
    {194, "REQUIRED_PASSWORD", kC, kC},
    {195, "IP_ADDRESS_NOT_ALLOWED", kC, kC},
    {202, "TOO_MANY_SIMULTANEOUS_QUERIES", kT, kT},
    {209, "SOCKET_TIMEOUT", kT, kD},
    {210, "NETWORK_ERROR", kT, kT},
    {241, "MEMORY_LIMIT_EXCEEDED", kT, kT},
    {243, "NOT_ENOUGH_SPACE", kT, kT},  // a full disk: about the server, never about the rows
    {225, "NO_ZOOKEEPER", kT, kT},        // a replicated table without its coordinator: nothing written
    {242, "TABLE_IS_READ_ONLY", kT, kT},  // a replica that lost its ZooKeeper session: refuses inserts for now
    {252, "TOO_MANY_PARTS", kT, kT},
    {285, "TOO_FEW_LIVE_REPLICAS", kT, kT},                  // insert_quorum not reachable: nothing written
    {286, "UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE", kT, kT},  // the quorum of an earlier insert is still pending
    {291, "DATABASE_ACCESS_DENIED", kC, kC},
    {319, "UNKNOWN_STATUS_OF_INSERT", kT, kD},  // the part is written, its commit or quorum is unknown
    {321, "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", kR, kR},
    {394, "QUERY_WAS_CANCELLED", kT, kD},
    {395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO", kR, kR},
    {497, "ACCESS_DENIED", kC, kC},
    {516, "AUTHENTICATION_FAILED", kC, kC},
    {999, "KEEPER_EXCEPTION", kT, kD},  // ZooKeeper failed while the insert committed its part: outcome unknown
};

const KnownCode* Find(int code) {
    for (const auto& known : kKnownCodes) {
        if (known.code == code) return &known;
    }
    return nullptr;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<int> ParseServerErrorCode(std::string_view body) {
    constexpr std::string_view kPrefix = "Code: ";
    std::size_t pos = 0;
    while ((pos = body.find(kPrefix, pos)) != std::string_view::npos) {
        std::size_t i = pos + kPrefix.size();
        long value = 0;
        std::size_t digits = 0;
        while (i < body.size() && IsDigit(body[i]) && digits < 6) {
            value = value * 10 + (body[i] - '0');
            ++i;
            ++digits;
        }
        // 18.x: "Code: 60, e.displayText() = ..."; modern: "Code: 60. DB::Exception: ...".
        if (digits > 0 && i < body.size() && (body[i] == ',' || body[i] == '.')) return static_cast<int>(value);
        pos += kPrefix.size();
    }
    return std::nullopt;
}

ErrorKind ClassifyServerError(int code, bool is_insert) {
    const KnownCode* known = Find(code);
    if (known == nullptr) return ErrorKind::kTransient;
    return is_insert ? known->insert_kind : known->kind;
}

std::string_view ServerErrorName(int code) {
    const KnownCode* known = Find(code);
    return known == nullptr ? std::string_view{} : known->name;
}

bool IsAuthenticationError(int code) {
    return code == error_code::kUnknownUser || code == error_code::kWrongPassword ||
           code == error_code::kRequiredPassword || code == error_code::kAuthenticationFailed;
}

namespace {
template <typename E>
[[noreturn]] void ThrowWithCode(E error, const std::string& code) {
    if (!code.empty()) error.SetOrigin(ErrorSource::kClickHouse, code);
    throw error;
}
}  // namespace

void ThrowError(ErrorKind kind, const std::string& message, const std::string& code) {
    switch (kind) {
        case ErrorKind::kTransient:
            ThrowWithCode(TransientError(message), code);
        case ErrorKind::kInDoubt:
            ThrowWithCode(InDoubtError(message), code);
        case ErrorKind::kRejected:
            ThrowWithCode(RejectedError(message), code);
        case ErrorKind::kConfiguration:
            ThrowWithCode(ConfigError(message), code);
        case ErrorKind::kInvalidInput:
            ThrowWithCode(InvalidInputError("clickhouse", message), code);
        case ErrorKind::kFatal:
            break;
    }
    ThrowWithCode(Error(ErrorKind::kFatal, message, true), code);
}

std::string WithoutEndpoint(std::string_view message) {
    constexpr std::string_view kPrefix = "ClickHouse ";
    constexpr std::string_view kInsert = " (insert into ";
    if (message.substr(0, kPrefix.size()) != kPrefix) return std::string(message);
    const std::size_t url_end = message.find(' ', kPrefix.size());
    if (url_end == std::string_view::npos || message.substr(url_end, kInsert.size()) != kInsert) {
        return std::string(message);
    }
    const std::size_t end = message.find("): ", url_end);
    return end == std::string_view::npos ? std::string(message) : std::string(message.substr(end + 3));
}

bool IsUnknownServerError(const Error& error) {
    if (error.Source() != ErrorSource::kClickHouse || error.Code().empty()) return false;
    if (error.Code().rfind("HTTP ", 0) == 0) return true;
    int code = 0;
    for (const char c : error.Code()) {
        if (!IsDigit(c) || code > 100000) return true;
        code = code * 10 + (c - '0');
    }
    return ServerErrorName(code).empty();
}

}  // namespace eventlog::clickhouse
