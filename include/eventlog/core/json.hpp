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

/// The event name as stored in ClickHouse, from the name as written (the one implementation of the rule; the relay
/// applies it when it encodes a row): spaces and tabs at either end dropped, runs of '-', '.', ' ', tab and '_'
/// become one '_', a word break inside CamelCase gets a '_', ASCII letters are lowered. "UserCreated" ->
/// "user_created", "HTTPRequestFailed" -> "http_request_failed", " user-created " -> "user_created". Idempotent:
/// a converted name converts to itself. Bytes >= 0x80 are kept as they are.
std::string ToSnakeCase(std::string_view name);

/// True when ToSnakeCase(name) == name and the name is not empty, checked without allocating (the common case).
bool IsSnakeCase(std::string_view name);

/// Appends `text` to `out` as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void AppendJsonString(std::string& out, std::string_view text);

}  // namespace eventlog
