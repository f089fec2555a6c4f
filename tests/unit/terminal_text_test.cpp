// What reaches the operator's terminal: event fields and server errors carrying escape sequences are shown, not
// interpreted, and JSON output stays valid JSON.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <eventlog/core/json.hpp>
#include <eventlog/core/text.hpp>
#include <eventlog/outbox/dead_letters.hpp>
#include <string>

namespace eventlog {
namespace {

using ::testing::HasSubstr;

/// True when `text` holds a byte a terminal may act on: C0, DEL, or a UTF-8 C1 control (U+0080..U+009F).
bool HasTerminalControl(std::string_view text) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c == 0x7F) return true;
        if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) <= 0x9F) return true;
        if (c >= 0x80 && c <= 0x9F) return true;  // a lone C1 byte (8-bit terminals)
    }
    return false;
}

TEST(SafeForTerminal, ClearScreenIsShownNotSent) {
    EXPECT_EQ(SafeForTerminal("before\x1b[2Jafter"), "before\\x1b[2Jafter");
}

TEST(SafeForTerminal, Osc52ClipboardWritesAreShownNotSent) {
    // Both terminators of an OSC sequence: BEL and ST (ESC \).
    EXPECT_EQ(SafeForTerminal("\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"), "\\x1b]52;c;Y3VybCBldmlsIHwgc2g=\\x07");
    EXPECT_EQ(SafeForTerminal("\x1b]52;c;eA==\x1b\\"), "\\x1b]52;c;eA==\\x1b\\");
}

TEST(SafeForTerminal, BelDelAndOtherC0) {
    EXPECT_EQ(SafeForTerminal("ding\x07"), "ding\\x07");
    EXPECT_EQ(SafeForTerminal("a\x7f"), "a\\x7f");
    EXPECT_EQ(SafeForTerminal(std::string("a\0b", 3)), "a\\x00b");
    EXPECT_EQ(SafeForTerminal("line1\nline2\r\tx\b"), "line1\\nline2\\r\\tx\\x08");
}

TEST(SafeForTerminal, C1ControlsAsUtf8AndAsLoneBytes) {
    EXPECT_EQ(SafeForTerminal("\xc2\x9b"
                              "2J"),
              "\\u009b2J");  // U+009B CSI
    EXPECT_EQ(SafeForTerminal("\xc2\x9d"
                              "52;c;eA==\xc2\x9c"),
              "\\u009d52;c;eA==\\u009c");
    EXPECT_EQ(SafeForTerminal("\x9b"
                              "2J"),
              "\\x9b2J");                         // not UTF-8: a raw 8-bit CSI
    EXPECT_EQ(SafeForTerminal("\xc3"), "\\xc3");  // truncated sequence
}

TEST(SafeForTerminal, BidiOverridesAreShown) {
    EXPECT_EQ(SafeForTerminal("invoice_\xe2\x80\xae"
                              "fdp.exe"),
              "invoice_\\u202efdp.exe");
    EXPECT_EQ(SafeForTerminal("\xe2\x81\xa6x\xe2\x81\xa9"), "\\u2066x\\u2069");
}

TEST(SafeForTerminal, OrdinaryTextIsUnchanged) {
    const std::string text = "user_created {\"email\":\"a@b.c\"} caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\x1b ~";
    EXPECT_EQ(SafeForTerminal(text), text);
    EXPECT_EQ(SafeForTerminal(""), "");
}

TEST(SafeJsonForTerminal, EscapesWhatJsonAllowsRawButTerminalsInterpret) {
    EXPECT_EQ(SafeJsonForTerminal("{\"a\":\"x\xc2\x9by\x7fz\"}"), "{\"a\":\"x\\u009by\\u007fz\"}");
    EXPECT_EQ(SafeJsonForTerminal("[\"\xe2\x80\xae\"]"), "[\"\\u202e\"]");
    EXPECT_EQ(SafeJsonForTerminal("[\"\x9b\"]"), "[\"\\ufffd\"]");
    const std::string plain = "{\"a\":\"caf\xc3\xa9 \\u001b \xf0\x9f\x98\x80\"}";
    EXPECT_EQ(SafeJsonForTerminal(plain), plain);
}

TEST(SafeJsonForTerminal, DeadLetterWithEscapesStaysValidJson) {
    outbox::DeadLetter d;
    d.event_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    d.event_type = "evil\x1b[2J";
    d.event_context =
        "{\"x\":\"\xc2\x9b"
        "31m\"}";
    d.error =
        "Code: 27. Cannot parse \x1b]52;c;Y3VybA==\x07 \xc2\x9b"
        "2J\x7f";
    const std::string json = SafeJsonForTerminal(d.ToJson());
    EXPECT_FALSE(HasTerminalControl(json)) << json;
    EXPECT_NO_THROW(MinifyJson(json, "dlq"));
    EXPECT_THAT(json, HasSubstr("\"event_type\":\"evil\\u001b[2J\""));
    EXPECT_THAT(json, HasSubstr("\\u009b2J\\u007f"));
}

}  // namespace
}  // namespace eventlog
