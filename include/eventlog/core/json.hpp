#pragma once

#include <string>
#include <string_view>

namespace eventlog {

/// Validates `json` and returns it with the whitespace outside strings removed; key order, duplicate
/// keys and string escapes are kept byte for byte. Throws InvalidInputError naming `field` when the
/// text is not valid JSON.
std::string MinifyJson(std::string_view json, std::string_view field = "event_context");

/// Removes whitespace outside strings from text already known to be valid JSON (no validation).
std::string MinifyTrustedJson(std::string_view json);

/// Converts an event name to snake_case: "UserCreated" -> "user_created", "HTTPRequestFailed" ->
/// "http_request_failed", "user-created" -> "user_created". Already snake_case names are unchanged.
std::string ToSnakeCase(std::string_view name);

/// Appends `text` to `out` as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void AppendJsonString(std::string& out, std::string_view text);

}  // namespace eventlog
