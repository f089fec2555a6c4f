#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <eventlog/core/event.hpp>
#include <eventlog/http/server.hpp>

#include "http/gzip.hpp"
#include "http/input.hpp"
#include "http/json_reader.hpp"

namespace eventlog::http::detail {
namespace {

using ::testing::HasSubstr;

/// The Problem thrown by `f`, or a failure.
template <typename F>
Problem ProblemOf(F f) {
    try {
        f();
    } catch (const ProblemError& e) {
        return e.Get();
    }
    ADD_FAILURE() << "expected a ProblemError";
    return {};
}

std::vector<IncomingEvent> Parse(std::string_view body, BodyFormat format = BodyFormat::kJson,
                                 EventLimits limits = {}) {
    return ParseEvents(body, format, limits);
}

TEST(HttpInputTest, ReadsEveryFieldOfAnEvent) {
    const auto events = Parse(R"( {"event_type":"OrderPlaced", "event_context": {"b":1, "a" : [ "x y" ]},
        "event_id":"5F0C8F3E-58C7-4B4C-9A59-1F1D1C7E2A10","event_date_time":"2024-02-29T23:59:59.123456+02:00",
        "environment":"prod","metadata_version":7,"trace_id":"t"} )");
    ASSERT_EQ(events.size(), 1u);
    const auto& e = events[0];
    EXPECT_EQ(e.event_type, "OrderPlaced");
    EXPECT_EQ(e.event_context, R"({"b":1,"a":["x y"]})");
    EXPECT_EQ(e.event_id, "5f0c8f3e-58c7-4b4c-9a59-1f1d1c7e2a10");
    EXPECT_EQ(e.event_date_time, "2024-02-29T23:59:59.123456+02:00");
    EXPECT_EQ(e.environment, "prod");
    EXPECT_EQ(e.metadata_version, 7);
    EXPECT_EQ(e.trace_id, "t");
}

TEST(HttpInputTest, NullOptionalFieldsAreAbsent) {
    const auto events =
        Parse(R"({"event_type":"a","event_context":{},"event_id":null,"environment":null,"metadata_version":null})");
    EXPECT_FALSE(events[0].event_id);
    EXPECT_FALSE(events[0].environment);
    EXPECT_FALSE(events[0].metadata_version);
}

TEST(HttpInputTest, ArraysAndNdjsonKeepTheOrder) {
    const auto array = Parse(R"([{"event_type":"a","event_context":{}},{"event_type":"b","event_context":{}}])");
    ASSERT_EQ(array.size(), 2u);
    EXPECT_EQ(array[1].event_type, "b");
    const auto lines =
        Parse("{\"event_type\":\"a\",\"event_context\":{}}\r\n\n  {\"event_type\":\"b\",\"event_context\":{}}",
              BodyFormat::kNdjson);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[1].event_type, "b");
}

TEST(HttpInputTest, MalformedJsonNamesTheByteOffset) {
    auto p = ProblemOf([] { Parse(R"({"event_type":"a",})"); });
    EXPECT_EQ(p.status, 400);
    EXPECT_EQ(p.offset, 18u);
    p = ProblemOf([] { Parse(R"([{"event_type":"a","event_context":{}} {}])"); });
    EXPECT_EQ(p.offset, 39u);
    p = ProblemOf([] { Parse("{\"event_type\":\"a\",\"event_context\":{}} trailing"); });
    EXPECT_EQ(p.offset, 38u);
    p = ProblemOf([] { Parse("{\"event_type\":\"a\xff\",\"event_context\":{}}"); });
    EXPECT_THAT(p.error, HasSubstr("UTF-8"));
    EXPECT_EQ(p.offset, 16u);
    p = ProblemOf([] {
        Parse("{\"event_type\":\"a\",\"event_context\":{}}{\"event_type\":\"b\",\"event_context\":{}}",
              BodyFormat::kNdjson);
    });
    EXPECT_THAT(p.error, HasSubstr("line feed"));
}

TEST(HttpInputTest, FieldErrorsNameTheFieldAndTheIndex) {
    struct Case {
        const char* body;
        const char* field;
        std::size_t index;
    };
    const Case cases[] = {
        {R"([{"event_type":"a","event_context":{}},{"event_context":{}}])", "event_type", 1},
        {R"([{"event_type":"a"}])", "event_context", 0},
        {R"([{"event_type":"  ","event_context":{}}])", "event_type", 0},
        {R"([{"event_type":"a","event_context":"{}"}])", "event_context", 0},
        {R"([{"event_type":"a","event_context":{},"event_id":"5f0c8f3e58c74b4c9a591f1d1c7e2a10"}])", "event_id", 0},
        {R"([{"event_type":"a","event_context":{},"event_date_time":"2024-05-01 12:00"}])", "event_date_time", 0},
        {R"([{"event_type":"a","event_context":{},"metadata_version":1.5}])", "metadata_version", 0},
        {R"([{"event_type":"a","event_context":{},"metadata_version":"1"}])", "metadata_version", 0},
        {R"([{"event_type":"a","event_context":{},"metadata_version":99999999999999999999}])", "metadata_version", 0},
        {R"([{"event_type":"a","event_context":{},"trace_id":1}])", "trace_id", 0},
        {R"([{"event_type":"a","event_context":{},"environment":"a\u0000b"}])", "environment", 0},
        {R"([{"event_type":"a","event_context":{},"event_type":"b"}])", "event_type", 0},
        {R"([{"event_type":"a","event_context":{},"extra":1}])", "extra", 0},
    };
    for (const auto& c : cases) {
        const auto p = ProblemOf([&] { Parse(c.body); });
        EXPECT_EQ(p.status, 400) << c.body;
        EXPECT_EQ(p.field, c.field) << c.body;
        EXPECT_EQ(p.index, c.index) << c.body;
    }
    const auto not_object = ProblemOf([] { Parse(R"([{"event_type":"a","event_context":{}}, 5])"); });
    EXPECT_EQ(not_object.index, 1u);
    EXPECT_EQ(ProblemOf([] { Parse("42"); }).status, 400);
    EXPECT_EQ(ProblemOf([] { Parse("[]"); }).status, 400);
    EXPECT_EQ(ProblemOf([] { Parse("", BodyFormat::kNdjson); }).status, 400);
}

TEST(HttpInputTest, AnUnknownKeyIsEchoedAtMost64BytesAndNeverCutInsideACharacter) {
    const std::string key = std::string(63, 'k') + "\xc3\xa9" + std::string(1000, 'x');
    const auto p = ProblemOf([&] { Parse(R"({"event_type":"a","event_context":{},")" + key + R"(":1})"); });
    EXPECT_EQ(p.field, std::string(63, 'k') + "...");
}

TEST(HttpInputTest, SizeLimitsAre413) {
    EventLimits limits;
    limits.max_events = 2;
    limits.max_context_bytes = 10;
    const std::string e = R"({"event_type":"a","event_context":{}})";
    EXPECT_EQ(ProblemOf([&] { Parse("[" + e + "," + e + "," + e + "]", BodyFormat::kJson, limits); }).status, 413);
    const auto big = ProblemOf(
        [&] { Parse(R"({"event_type":"a","event_context":{"k":"0123456789"}})", BodyFormat::kJson, limits); });
    EXPECT_EQ(big.status, 413);
    EXPECT_EQ(big.field, "event_context");
    const auto long_type =
        ProblemOf([] { Parse(R"({"event_type":")" + std::string(201, 'a') + R"(","event_context":{}})"); });
    EXPECT_EQ(long_type.status, 400);
    EXPECT_EQ(long_type.field, "event_type");
}

TEST(HttpInputTest, DeepNestingIsRefusedNotOverflowed) {
    const std::string deep = R"({"event_type":"a","event_context":)" + std::string(100000, '[') + "}";
    const auto p = ProblemOf([&] { Parse(deep); });
    EXPECT_EQ(p.status, 400);
    EXPECT_THAT(p.error, HasSubstr("nesting"));
}

TEST(HttpInputTest, Rfc3339) {
    for (const char* ok : {"2024-05-01T12:00:00Z", "2024-05-01t12:00:00z", "2024-05-01 12:00:00+02:00",
                           "2024-02-29T00:00:00.1-00:30", "2000-02-29T23:59:59.123456789Z"}) {
        EXPECT_TRUE(IsRfc3339(ok)) << ok;
    }
    for (const char* bad :
         {"2024-05-01", "2024-05-01T12:00:00", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z", "2024-05-01T24:00:00Z",
          "2024-05-01T12:00:60Z", "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00+0200", "2024-05-01T12:00:00Z ",
          "0000-01-01T00:00:00Z", "2024-05-01T12:00:00.1234567890Z", "1900-02-29T00:00:00Z"}) {
        EXPECT_FALSE(IsRfc3339(bad)) << bad;
    }
}

TEST(HttpInputTest, Rfc3339ReadsTheInstantWithItsOffsetAndRoundsToTheMicrosecond) {
    EXPECT_EQ(ParseRfc3339("1970-01-01T00:00:00Z"), 0);
    EXPECT_EQ(ParseRfc3339("1970-01-01T02:00:00+02:00"), 0);
    EXPECT_EQ(ParseRfc3339("1969-12-31T23:30:00-00:30"), 0);
    EXPECT_EQ(ParseRfc3339("2024-05-01 12:00:00.5Z"), 1'714'564'800'500'000);
    EXPECT_EQ(ParseRfc3339("2106-02-07T06:28:15.9999994Z"), kMaxEventTimeMicros);
    EXPECT_EQ(ParseRfc3339("2106-02-07T06:28:15.9999995Z"), kMaxEventTimeMicros + 1);
    EXPECT_EQ(ParseRfc3339("2024-13-01T00:00:00Z"), std::nullopt);
}

// Dates ClickHouse's DateTime cannot store are a 400 naming the field and index, not a dead letter (issue 20).
TEST(HttpInputTest, ADateClickHouseCannotStoreIsRefusedNamingTheField) {
    for (const char* bad : {"1969-12-31T23:59:59Z", "2106-02-07T06:28:16Z", "2106-02-07T08:28:16+02:00",
                            "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"}) {
        const auto p = ProblemOf([&] {
            Parse(std::string(R"([{"event_type":"a","event_context":{}},{"event_type":"a","event_context":{},)") +
                  R"("event_date_time":")" + bad + R"("}])");
        });
        EXPECT_EQ(p.status, 400) << bad;
        EXPECT_EQ(p.field, "event_date_time") << bad;
        EXPECT_EQ(p.index, 1u) << bad;
        EXPECT_THAT(p.error, HasSubstr("1970-01-01 to 2106-02-07T06:28:15Z")) << bad;
    }
    for (const char* good : {"1970-01-01T00:00:00Z", "2106-02-07T06:28:15.999999Z", "2106-02-07T08:28:15+02:00"}) {
        EXPECT_EQ(
            Parse(std::string(R"({"event_type":"a","event_context":{},"event_date_time":")") + good + "\"}").size(), 1u)
            << good;
    }
}

TEST(HttpInputTest, JsonStringsDecodeEscapesAndRefuseLoneSurrogates) {
    JsonReader ok(R"("a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00")");
    EXPECT_EQ(ok.ReadString(), "a\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    for (const char* bad : {R"("\ud83d")", R"("\ude00")", R"("\x")", "\"\x01\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\""}) {
        JsonReader r(bad);
        EXPECT_THROW(r.ReadString(), JsonSyntaxError) << bad;
    }
}

TEST(HttpInputTest, UsersAreValidatedAndTheDomainIsLowerCased) {
    const auto u = ParseUser(R"({"email":"Test@Example.COM","first_name":"Test","last_name":"Testovich"})");
    EXPECT_EQ(u.email, "Test@example.com");
    EXPECT_EQ(u.first_name, "Test");
    EXPECT_EQ(ParseUser(R"({"email":"a@b"})").last_name, "");
    for (const char* bad : {R"({})", R"({"email":"nope"})", R"({"email":"a b@c"})", R"({"email":"@c"})",
                            R"({"email":"a@b@c"})", R"({"email":1})", R"({"email":"a@b","admin":true})"}) {
        const auto p = ProblemOf([&] { ParseUser(bad); });
        EXPECT_EQ(p.status, 400) << bad;
        EXPECT_FALSE(p.field.empty()) << bad;
    }
    EXPECT_EQ(ProblemOf([] { ParseUser(R"({"email":"a@b",)"); }).offset, 15u);
}

TEST(HttpInputTest, TheEventsQueryTakesWaitVisibleAndATimeoutWithItsUnit) {
    EXPECT_FALSE(ParseEventsQuery("").visible);
    const auto plain = ParseEventsQuery("wait=visible");
    EXPECT_TRUE(plain.visible);
    EXPECT_EQ(plain.timeout, std::chrono::seconds(10));
    EXPECT_EQ(ParseEventsQuery("wait=visible&timeout=250ms").timeout, std::chrono::milliseconds(250));
    EXPECT_EQ(ParseEventsQuery("timeout=30s&wait=visible").timeout, std::chrono::seconds(30));
    EXPECT_EQ(ParseEventsQuery("wait=visible&timeout=30000ms").timeout, kMaxWaitTimeout);
    EXPECT_EQ(ParseEventsQuery("wait=%76isible&timeout=0s").timeout, std::chrono::milliseconds(0));
    for (const char* bad : {"timeout=30001ms", "timeout=31s", "timeout=5", "timeout=s", "timeout=5m", "timeout=+5s",
                            "timeout=99999999999s", "timeout=", "timeout=1s&timeout=1s"}) {
        EXPECT_EQ(ProblemOf([&] { ParseEventsQuery(std::string("wait=visible&") + bad); }).field, "timeout") << bad;
    }
    EXPECT_EQ(ProblemOf([] { ParseEventsQuery("timeout=1s"); }).field, "timeout");
    EXPECT_EQ(ProblemOf([] { ParseEventsQuery("wait=yes"); }).field, "wait");
    EXPECT_EQ(ProblemOf([] { ParseEventsQuery("wait"); }).field, "wait");
    EXPECT_EQ(ProblemOf([] { ParseEventsQuery("colour=red"); }).field, "colour");
    EXPECT_EQ(ProblemOf([] { ParseEventsQuery("wait=%7"); }).status, 400);
}

TEST(HttpGzipTest, RoundTripsAndBoundsTheInflatedSize) {
    const std::string text(100'000, 'x');
    const std::string packed = Gzip(text);
    EXPECT_LT(packed.size(), 1000u);
    EXPECT_EQ(Gunzip(packed, text.size()), text);
    EXPECT_EQ(ProblemOf([&] { Gunzip(packed, text.size() - 1); }).status, 413);
    EXPECT_EQ(ProblemOf([&] { Gunzip(packed.substr(0, packed.size() / 2), text.size()); }).status, 400);
    EXPECT_EQ(ProblemOf([&] { Gunzip(packed + "junk", text.size()); }).status, 400);
    EXPECT_EQ(ProblemOf([] { Gunzip("plain text", 100); }).status, 400);
}

}  // namespace
}  // namespace eventlog::http::detail
