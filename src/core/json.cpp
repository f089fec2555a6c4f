#include <fmt/format.h>
#include <simdjson.h>

#include <cctype>
#include <eventlog/core/error.hpp>
#include <eventlog/core/json.hpp>

namespace eventlog {

std::string MinifyTrustedJson(std::string_view json) {
    std::string out;
    out.reserve(json.size());
    bool in_string = false;
    for (std::size_t i = 0; i < json.size(); ++i) {
        const char c = json[i];
        if (in_string) {
            out.push_back(c);
            if (c == '\\' && i + 1 < json.size()) {
                out.push_back(json[++i]);
            } else if (c == '"') {
                in_string = false;
            }
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        if (c == '"') in_string = true;
        out.push_back(c);
    }
    return out;
}

std::string MinifyJson(std::string_view json, std::string_view field) {
    simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    auto parsed = parser.parse(padded);
    if (parsed.error() != simdjson::SUCCESS) {
        throw InvalidInputError(std::string(field),
                                fmt::format("expected valid JSON ({})", simdjson::error_message(parsed.error())));
    }
    return MinifyTrustedJson(json);
}

std::string ToSnakeCase(std::string_view name) {
    std::string out;
    out.reserve(name.size() + 4);
    for (std::size_t i = 0; i < name.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(name[i]);
        if (c == '-' || c == ' ' || c == '.') {
            if (!out.empty() && out.back() != '_') out.push_back('_');
            continue;
        }
        if (std::isupper(c)) {
            const bool prev_lower_or_digit = i > 0 && (std::islower(static_cast<unsigned char>(name[i - 1])) ||
                                                       std::isdigit(static_cast<unsigned char>(name[i - 1])));
            const bool acronym_end = i > 0 && std::isupper(static_cast<unsigned char>(name[i - 1])) &&
                                     i + 1 < name.size() && std::islower(static_cast<unsigned char>(name[i + 1]));
            if ((prev_lower_or_digit || acronym_end) && !out.empty() && out.back() != '_') out.push_back('_');
            out.push_back(static_cast<char>(std::tolower(c)));
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

void AppendJsonString(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.push_back('"');
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20) {
                    out += "\\u00";
                    out.push_back(kHex[c >> 4]);
                    out.push_back(kHex[c & 0x0F]);
                } else {
                    out.push_back(ch);
                }
        }
    }
    out.push_back('"');
}

}  // namespace eventlog
