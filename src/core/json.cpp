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
    const auto first = name.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    name = name.substr(first, name.find_last_not_of(" \t") - first + 1);
    const auto at = [&](std::size_t k) { return static_cast<unsigned char>(name[k]); };
    std::string out;
    out.reserve(name.size() + 4);
    const auto underscore = [&out] {
        if (!out.empty() && out.back() != '_') out.push_back('_');
    };
    for (std::size_t i = 0; i < name.size(); ++i) {
        const unsigned char c = at(i);
        if (c == '-' || c == ' ' || c == '.' || c == '\t') {
            underscore();
        } else if (c == '_') {
            if (out.empty() || out.back() != '_') out.push_back('_');
        } else if (std::isupper(c)) {
            const bool prev_lower_or_digit = i > 0 && (std::islower(at(i - 1)) || std::isdigit(at(i - 1)));
            const bool acronym_end = i > 0 && std::isupper(at(i - 1)) && i + 1 < name.size() && std::islower(at(i + 1));
            if (prev_lower_or_digit || acronym_end) underscore();
            out.push_back(static_cast<char>(std::tolower(c)));
        } else {
            out.push_back(static_cast<char>(c));
        }
    }
    return out;
}

bool IsSnakeCase(std::string_view name) {
    if (name.empty()) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        if ((c >= 'A' && c <= 'Z') || c == '-' || c == '.' || c == ' ' || c == '\t') return false;
        if (c == '_' && i > 0 && name[i - 1] == '_') return false;
    }
    return true;
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
