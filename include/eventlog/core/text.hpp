#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace eventlog {

/// `text` made safe to print on a terminal: C0 controls (ESC, BEL, newline, ...), DEL, C1 controls (U+0080..U+009F),
/// bidirectional formatting characters and bytes that are not UTF-8 are shown as escapes ("\x1b", "\n", "\u009b",
/// "\u202e", "\x9b"); everything else, including other UTF-8, is kept. For display only: not reversible.
std::string SafeForTerminal(std::string_view text);

/// A valid JSON text made safe to print on a terminal, still valid and equal JSON: the characters JSON allows raw
/// in strings but terminals interpret (DEL, C1 controls, bidirectional formatting characters) become \uXXXX escapes
/// and bytes that are not UTF-8 become \ufffd. C0 controls must already be escaped (as AppendJsonString does).
std::string SafeJsonForTerminal(std::string_view json);

/// The URL-safe base64 alphabet (RFC 4648, section 5).
inline constexpr std::string_view kBase64UrlAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `size` bytes at `data` in URL-safe base64 without padding (tokens for cookies and API keys).
std::string Base64Url(const unsigned char* data, std::size_t size);

}  // namespace eventlog
