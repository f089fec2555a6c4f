#include <gtest/gtest.h>

#include <eventlog/observability/log.hpp>
#include <string>
#include <thread>

#include "support/run_command.hpp"

namespace elog = eventlog::log;
using eventlog::testing::RunCommand;

namespace {

/// Restores JSON lines at the end of a test that switches format.
struct JsonAfterwards {
    JsonAfterwards() = default;
    JsonAfterwards(const JsonAfterwards&) = delete;
    JsonAfterwards& operator=(const JsonAfterwards&) = delete;
    ~JsonAfterwards() { elog::SetFormat("json"); }
};

/// Each line of `lines` through Python's json parser, printed back with sorted keys (fails on any bad line).
std::string ParseJsonLines(const std::string& lines) {
    const auto r = RunCommand(
        "/usr/bin/python3 -c 'import json,sys\nfor l in sys.stdin: print(json.dumps(json.loads(l), sort_keys=True))'",
        lines);
    EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- lines ---\n" << lines;
    return r.output;
}

/// True when `text` is an RFC 3339 UTC time with microseconds: 2026-11-27T10:00:00.123456Z.
bool IsTimestamp(std::string_view text) {
    constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (text.size() != kShape.size()) return false;
    for (std::size_t i = 0; i < kShape.size(); ++i) {
        const bool ok = kShape[i] == 'd' ? (text[i] >= '0' && text[i] <= '9') : text[i] == kShape[i];
        if (!ok) return false;
    }
    return true;
}

}  // namespace

TEST(ObservabilityLog, ScopedContextFieldsAppearOnEveryLineOfTheScopeAsValidJson) {
    elog::SetFormat("json");
    ::testing::internal::CaptureStderr();
    {
        elog::ScopedContext trace({{"trace_id", std::string("4bf92f3577b34da6a3ce929d0e0e4736")},
                                   {"span_id", std::string("00f067aa0ba902b7")}});
        elog::Info("batch_claimed", {{"rows", std::int64_t{1000}}});
        {
            elog::ScopedContext batch({{"batch_id", std::int64_t{42}}, {"span_id", std::string("1111111111111111")}});
            elog::Warning("batch_retry",
                          {{"error", std::string("quote \" and\nnewline")}, {"batch_id", std::int64_t{7}}});
        }
        elog::Info("batch_done");
    }
    elog::Info("outside");
    const std::string out = ParseJsonLines(::testing::internal::GetCapturedStderr());
    std::vector<std::string> lines;
    for (std::size_t pos = 0, next = 0; (next = out.find('\n', pos)) != std::string::npos; pos = next + 1) {
        lines.push_back(out.substr(pos, next - pos));
    }
    ASSERT_EQ(lines.size(), 4u) << out;
    for (const auto& l : lines) {
        const auto at = l.find("\"timestamp\": \"");
        ASSERT_NE(at, std::string::npos) << l;
        EXPECT_TRUE(IsTimestamp(std::string_view(l).substr(at + 14, 27))) << l;
    }
    EXPECT_NE(
        lines[0].find(R"("event": "batch_claimed", "level": "info", "rows": 1000, "span_id": "00f067aa0ba902b7")"),
        std::string::npos)
        << lines[0];
    EXPECT_NE(lines[0].find(R"("trace_id": "4bf92f3577b34da6a3ce929d0e0e4736")"), std::string::npos) << lines[0];
    // Inner scope wins over the outer one, the call's own field over both; each key appears once.
    EXPECT_NE(lines[1].find(R"("batch_id": 7)"), std::string::npos) << lines[1];
    EXPECT_NE(lines[1].find(R"("span_id": "1111111111111111")"), std::string::npos) << lines[1];
    EXPECT_NE(lines[1].find(R"("error": "quote \" and\nnewline")"), std::string::npos) << lines[1];
    EXPECT_NE(lines[2].find(R"("span_id": "00f067aa0ba902b7")"), std::string::npos) << lines[2];
    EXPECT_EQ(lines[2].find("batch_id"), std::string::npos) << lines[2];
    EXPECT_EQ(lines[3].find("trace_id"), std::string::npos) << lines[3];
    EXPECT_TRUE(elog::CurrentContext().empty());
}

// (issue 20) Bytes that are not UTF-8 (a payload's, a server's message) were written raw into JSON lines, which
// made the line invalid JSON for any strict reader. They become U+FFFD; valid UTF-8 is kept. Seen failing before
// the fix: Python's parser refused the line.
TEST(ObservabilityLog, BytesThatAreNotUtf8BecomeReplacementCharactersAndTheLineStaysJson) {
    elog::SetFormat("json");
    ::testing::internal::CaptureStderr();
    elog::Info("utf8_test", {{"text", std::string("caf\xc3\xa9 \xff\xfe end")}, {std::string("k\x80"), true}});
    const std::string out = ParseJsonLines(::testing::internal::GetCapturedStderr());
    EXPECT_NE(out.find(R"("text": "caf\u00e9 \ufffd\ufffd end")"), std::string::npos) << out;
    EXPECT_NE(out.find(R"("k\ufffd": true)"), std::string::npos) << out;
}

TEST(ObservabilityLog, ContextBelongsToItsThread) {
    elog::SetFormat("json");
    elog::ScopedContext mine({{"batch_id", std::int64_t{1}}});
    ::testing::internal::CaptureStderr();
    std::thread([] { elog::Info("other_thread"); }).join();
    const std::string out = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(out.find("other_thread"), std::string::npos);
    EXPECT_EQ(out.find("batch_id"), std::string::npos) << out;
    EXPECT_EQ(elog::CurrentContext().size(), 1u);
}

TEST(ObservabilityLog, ConsoleFormatIsReadableAndEscapesTerminalControls) {
    const JsonAfterwards restore;
    EXPECT_FALSE(elog::SetFormat("yaml"));
    EXPECT_EQ(elog::CurrentFormat(), elog::Format::kJson);
    ASSERT_TRUE(elog::SetFormat("CONSOLE"));
    EXPECT_EQ(elog::CurrentFormat(), elog::Format::kConsole);
    ::testing::internal::CaptureStderr();
    {
        elog::ScopedContext ctx({{"trace_id", std::string("4bf92f3577b34da6a3ce929d0e0e4736")}});
        elog::Error("relay_stalled", {{"pending", std::int64_t{12}},
                                      {"reason", std::string("no ack for 300 s")},
                                      {"evil", std::string("\x1b[31mred\x07")},
                                      {"ok", true},
                                      {"ratio", 0.5}});
    }
    const std::string out = ::testing::internal::GetCapturedStderr();
    ASSERT_GT(out.size(), 28u) << out;
    EXPECT_TRUE(IsTimestamp(std::string_view(out).substr(0, 27))) << out;
    EXPECT_EQ(out.substr(27),
              " ERROR relay_stalled trace_id=4bf92f3577b34da6a3ce929d0e0e4736 pending=12 reason=\"no ack for 300 s\" "
              "evil=\"\\u001b[31mred\\u0007\" ok=true ratio=0.5\n")
        << out;
    EXPECT_EQ(out.find('\x1b'), std::string::npos);
}
