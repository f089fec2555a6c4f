#include "http/json_reader.hpp"

namespace eventlog::http::detail {

void JsonReader::SkipWhitespace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
        ++pos_;
    }
}

void JsonReader::SkipLineSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\r')) ++pos_;
}

void JsonReader::Fail(const std::string& message) const { throw JsonSyntaxError(pos_, message); }

void JsonReader::Expect(char c, const char* expected) {
    if (Peek() != c || AtEnd()) Fail(std::string("expected ") + expected);
    ++pos_;
}

bool JsonReader::Consume(char c) noexcept {
    if (AtEnd() || text_[pos_] != c) return false;
    ++pos_;
    return true;
}

unsigned JsonReader::ReadHex4() {
    unsigned value = 0;
    for (int i = 0; i < 4; ++i) {
        const char c = Peek();
        unsigned digit = 0;
        if (c >= '0' && c <= '9') {
            digit = static_cast<unsigned>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            digit = static_cast<unsigned>(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            digit = static_cast<unsigned>(c - 'A' + 10);
        } else {
            Fail("expected 4 hexadecimal digits after \\u");
        }
        value = value * 16 + digit;
        ++pos_;
    }
    return value;
}

void JsonReader::AppendUtf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string JsonReader::ReadString() {
    Expect('"', "a string");
    std::string out;
    for (;;) {
        if (AtEnd()) Fail("unterminated string");
        const auto c = static_cast<unsigned char>(text_[pos_]);
        if (c == '"') {
            ++pos_;
            return out;
        }
        if (c < 0x20) Fail("control character in string");
        if (c == '\\') {
            ++pos_;
            const char e = Peek();
            if (AtEnd()) Fail("unterminated string");
            ++pos_;
            switch (e) {
                case '"':
                case '\\':
                case '/':
                    out.push_back(e);
                    break;
                case 'b':
                    out.push_back('\b');
                    break;
                case 'f':
                    out.push_back('\f');
                    break;
                case 'n':
                    out.push_back('\n');
                    break;
                case 'r':
                    out.push_back('\r');
                    break;
                case 't':
                    out.push_back('\t');
                    break;
                case 'u': {
                    unsigned cp = ReadHex4();
                    if (cp >= 0xDC00 && cp <= 0xDFFF) Fail("unpaired surrogate in \\u escape");
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        if (!Consume('\\') || !Consume('u')) Fail("unpaired surrogate in \\u escape");
                        const unsigned low = ReadHex4();
                        if (low < 0xDC00 || low > 0xDFFF) Fail("unpaired surrogate in \\u escape");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    AppendUtf8(out, cp);
                    break;
                }
                default:
                    --pos_;
                    Fail("invalid escape in string");
            }
            continue;
        }
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
            ++pos_;
            continue;
        }
        // UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
        std::size_t length = 0;
        unsigned cp = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            length = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            length = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            length = 4;
            cp = c & 0x07;
        } else {
            Fail("invalid UTF-8");
        }
        if (pos_ + length > text_.size()) Fail("invalid UTF-8");
        for (std::size_t i = 1; i < length; ++i) {
            const auto cont = static_cast<unsigned char>(text_[pos_ + i]);
            if ((cont & 0xC0) != 0x80) Fail("invalid UTF-8");
            cp = (cp << 6) | (cont & 0x3F);
        }
        if ((length == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (length == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
            Fail("invalid UTF-8");
        }
        out.append(text_.substr(pos_, length));
        pos_ += length;
    }
}

void JsonReader::SkipNumber() {
    const auto digit = [&] { return Peek() >= '0' && Peek() <= '9' && !AtEnd(); };
    Consume('-');
    if (Consume('0')) {
    } else if (digit()) {
        while (digit()) ++pos_;
    } else {
        Fail("invalid number");
    }
    if (Consume('.')) {
        if (!digit()) Fail("invalid number");
        while (digit()) ++pos_;
    }
    if (Consume('e') || Consume('E')) {
        if (!Consume('+')) Consume('-');
        if (!digit()) Fail("invalid number");
        while (digit()) ++pos_;
    }
}

void JsonReader::SkipLiteral(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) Fail("invalid literal");
    pos_ += word.size();
}

JsonType JsonReader::SkipValue(std::string_view* span, int depth) {
    SkipWhitespace();
    const std::size_t start = pos_;
    JsonType type = JsonType::kNull;
    switch (Peek()) {
        case '{':
            if (depth >= kMaxDepth) Fail("nesting deeper than 128 levels");
            ++pos_;
            type = JsonType::kObject;
            SkipWhitespace();
            if (!Consume('}')) {
                for (;;) {
                    SkipWhitespace();
                    ReadString();
                    SkipWhitespace();
                    Expect(':', "':' after an object key");
                    SkipValue(nullptr, depth + 1);
                    SkipWhitespace();
                    if (Consume('}')) break;
                    Expect(',', "',' or '}' in an object");
                }
            }
            break;
        case '[':
            if (depth >= kMaxDepth) Fail("nesting deeper than 128 levels");
            ++pos_;
            type = JsonType::kArray;
            SkipWhitespace();
            if (!Consume(']')) {
                for (;;) {
                    SkipValue(nullptr, depth + 1);
                    SkipWhitespace();
                    if (Consume(']')) break;
                    Expect(',', "',' or ']' in an array");
                }
            }
            break;
        case '"':
            ReadString();
            type = JsonType::kString;
            break;
        case 't':
            SkipLiteral("true");
            type = JsonType::kBool;
            break;
        case 'f':
            SkipLiteral("false");
            type = JsonType::kBool;
            break;
        case 'n':
            SkipLiteral("null");
            type = JsonType::kNull;
            break;
        default:
            if (AtEnd()) Fail("unexpected end of input");
            if (Peek() != '-' && (Peek() < '0' || Peek() > '9')) Fail("expected a JSON value");
            SkipNumber();
            type = JsonType::kNumber;
    }
    if (span != nullptr) *span = text_.substr(start, pos_ - start);
    return type;
}

}  // namespace eventlog::http::detail
