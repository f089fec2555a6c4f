#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace eventlog::http::detail {

/// Malformed JSON at byte `Offset()` of the whole body.
class JsonSyntaxError : public std::runtime_error {
public:
    JsonSyntaxError(std::size_t offset, const std::string& message) : std::runtime_error(message), offset_(offset) {}
    /// Byte offset of the first byte that cannot be part of valid JSON.
    std::size_t Offset() const noexcept { return offset_; }

private:
    std::size_t offset_;
};

/// The JSON value types (RFC 8259).
enum class JsonType { kNull, kBool, kNumber, kString, kArray, kObject };

/// A strict pull reader over one buffer (RFC 8259: no comments, no trailing commas, UTF-8 validated, control
/// characters refused in strings, nesting bounded by kMaxDepth). It never copies the input; values read whole are
/// returned as spans of it. Not thread-safe; the text must outlive the reader.
class JsonReader {
public:
    /// Deepest nesting accepted inside any value.
    static constexpr int kMaxDepth = 128;

    explicit JsonReader(std::string_view text) : text_(text) {}

    /// Skips spaces, tabs, CR and LF.
    void SkipWhitespace();
    /// Skips spaces, tabs and CR (not LF: NDJSON's separator).
    void SkipLineSpace();
    /// The byte at the position, '\0' at the end.
    char Peek() const noexcept { return pos_ < text_.size() ? text_[pos_] : '\0'; }
    /// True at the end of the text.
    bool AtEnd() const noexcept { return pos_ >= text_.size(); }
    /// The position (byte offset).
    std::size_t Position() const noexcept { return pos_; }
    /// Consumes `c` or throws JsonSyntaxError `expected`.
    void Expect(char c, const char* expected);
    /// Consumes `c` when it is next; true when it was.
    bool Consume(char c) noexcept;
    /// Reads a string and returns it decoded (escapes resolved, UTF-8 checked).
    std::string ReadString();
    /// Validates any value without building it; returns its type and sets `span` to its text.
    JsonType SkipValue(std::string_view* span = nullptr, int depth = 0);
    /// Throws JsonSyntaxError at the position.
    [[noreturn]] void Fail(const std::string& message) const;

private:
    void SkipNumber();
    void SkipLiteral(std::string_view word);
    void AppendUtf8(std::string& out, unsigned code_point);
    unsigned ReadHex4();

    std::string_view text_;
    std::size_t pos_{0};
};

}  // namespace eventlog::http::detail
