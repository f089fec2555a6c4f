#include <fmt/format.h>

#include <cstdint>
#include <eventlog/core/text.hpp>

namespace eventlog {
namespace {

/// Decodes the UTF-8 sequence at `text[i]`; returns its length (0 when the bytes there are not well-formed
/// UTF-8: bad lead or continuation byte, overlong form, surrogate, beyond U+10FFFF, truncated).
std::size_t DecodeUtf8(std::string_view text, std::size_t i, char32_t& code_point) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    std::size_t length = 0;
    char32_t min = 0;
    if (lead < 0x80) {
        code_point = lead;
        return 1;
    }
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
        code_point = lead & 0x1F;
        min = 0x80;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        code_point = lead & 0x0F;
        min = 0x800;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        code_point = lead & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (i + length > text.size()) return 0;
    for (std::size_t k = 1; k < length; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80) return 0;
        code_point = (code_point << 6) | (byte(i + k) & 0x3F);
    }
    if (code_point < min || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) return 0;
    return length;
}

/// Bidirectional formatting characters: they reorder what follows on the line (Trojan Source, CVE-2021-42574).
bool IsBidiControl(char32_t c) {
    return c == 0x061C || c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

/// A code point a terminal may act on or that changes how the line reads: C0, DEL, C1, bidi controls.
bool IsControl(char32_t c) { return c < 0x20 || (c >= 0x7F && c <= 0x9F) || IsBidiControl(c); }

}  // namespace

std::string SafeForTerminal(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        char32_t c = 0;
        const std::size_t length = DecodeUtf8(text, i, c);
        if (length == 0) {
            out += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[i]));
            ++i;
            continue;
        }
        if (!IsControl(c)) {
            out.append(text.substr(i, length));
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c <= 0x7F) {
            out += fmt::format("\\x{:02x}", static_cast<std::uint32_t>(c));
        } else {
            out += fmt::format("\\u{:04x}", static_cast<std::uint32_t>(c));
        }
        i += length;
    }
    return out;
}

std::string SafeJsonForTerminal(std::string_view json) {
    std::string out;
    out.reserve(json.size());
    for (std::size_t i = 0; i < json.size();) {
        char32_t c = 0;
        const std::size_t length = DecodeUtf8(json, i, c);
        if (length == 0) {
            out += "\\ufffd";  // not UTF-8, so not JSON either; only possible inside a string
            ++i;
            continue;
        }
        // Raw newline, CR and tab are JSON whitespace between tokens; any other control can only be in a string.
        if (IsControl(c) && c != '\n' && c != '\r' && c != '\t') {
            out += fmt::format("\\u{:04x}", static_cast<std::uint32_t>(c));
        } else {
            out.append(json.substr(i, length));
        }
        i += length;
    }
    return out;
}

std::string Base64Url(const unsigned char* data, std::size_t size) {
    std::string out;
    std::uint32_t buffer = 0;
    int bits = 0;
    for (std::size_t i = 0; i < size; ++i) {
        buffer = (buffer << 8) | data[i];
        bits += 8;
        while (bits >= 6) {
            out.push_back(kBase64UrlAlphabet[(buffer >> (bits - 6)) & 0x3F]);
            bits -= 6;
        }
    }
    if (bits > 0) out.push_back(kBase64UrlAlphabet[(buffer << (6 - bits)) & 0x3F]);
    return out;
}

}  // namespace eventlog
