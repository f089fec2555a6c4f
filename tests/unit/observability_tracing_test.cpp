#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/tracing.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/http_listener.hpp"
#include "support/run_command.hpp"

namespace t = eventlog::tracing;
using eventlog::testing::HttpListener;
using eventlog::testing::RunCommand;
using eventlog::testing::ShellQuote;

namespace {

constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Threads of this process, from /proc.
std::size_t ThreadCount() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
    return n;
}

t::SpanContext Context(const char* trace_hex, const char* span_hex, std::uint8_t flags = 1) {
    return {*t::ParseTraceId(trace_hex), *t::ParseSpanId(span_hex), flags};
}

/// A batch span with a parent, attributes of every type, an error status and two links with attributes.
t::Span SampleSpan() {
    t::Span span;
    span.context = Context("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    span.parent_span_id = *t::ParseSpanId("00f067aa0ba902b7");
    span.name = "relay.batch \"quoted\"\n";
    span.kind = t::SpanKind::kConsumer;
    span.start_unix_nanos = 1'700'000'000'123'456'789;
    span.end_unix_nanos = 1'700'000'001'000'000'001;
    span.attributes = {{"messaging.system", std::string("postgresql")},
                       {"messaging.batch.message_count", std::int64_t{9'007'199'254'740'993}},
                       {"ratio", 0.25},
                       {"retried", true}};
    span.status = t::StatusCode::kError;
    span.status_message = "ClickHouse 241: memory limit";
    span.links = {{Context("11111111111111111111111111111111", "2222222222222222"),
                   {{"messaging.message.id", std::string("e1")}}},
                  {Context("33333333333333333333333333333333", "4444444444444444", 0), {}}};
    span.dropped_links_count = 7;
    return span;
}

/// The protocol checker (tests/protocol/otlp_check.js) on `json`; fails the test when node or its packages are
/// missing (never skips).
std::string CheckWithOpentelemetryProto(const std::string& json) {
    const std::string dir = std::string(EVENTLOG_SOURCE_DIR) + "/tests/protocol";
    EXPECT_TRUE(std::filesystem::exists(dir + "/node_modules/@opentelemetry/otlp-transformer"))
        << "run scripts/install-deps.sh (it runs `npm ci` in tests/protocol)";
    const auto path =
        std::filesystem::temp_directory_path() / ("eventlog_otlp_" + std::to_string(::getpid()) + ".json");
    {
        std::ofstream f(path, std::ios::binary);
        f << json;
    }
    const auto r = RunCommand("cd " + ShellQuote(dir) + " && node otlp_check.js " + ShellQuote(path.string()));
    std::filesystem::remove(path);
    EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- request ---\n" << json;
    return r.output;
}

}  // namespace

TEST(ObservabilityTraceparent, ParsesAValidVersion00Header) {
    const auto c = t::ParseTraceparent(kValid);
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(t::ToHex(c->trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(t::ToHex(c->span_id), "00f067aa0ba902b7");
    EXPECT_TRUE(c->Sampled());
    EXPECT_EQ(t::FormatTraceparent(*c), kValid);
    const auto unsampled = t::ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    ASSERT_TRUE(unsampled.has_value());
    EXPECT_FALSE(unsampled->Sampled());
    // Unknown flag bits are kept (and ignored).
    EXPECT_EQ(t::ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09")->flags, 0x09);
}

TEST(ObservabilityTraceparent, RejectsWhatTheW3CSpecSaysIsInvalid) {
    const char* invalid[] = {
        "",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    // all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    // all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    // upper-case hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",    // upper-case hex
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",    // upper-case flags
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // version ff is invalid
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.",   // version 00 with trailing data
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",   // trailing space
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  // version 00 has exactly four fields
        ".0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // illegal version characters
        "0.-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "000-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version too long
        "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",     // version too short
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",     // trace id too short
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",   // trace id too long
        "00-.bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    // illegal trace id character
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",     // parent id too short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-01",   // parent id too long
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b.-01",    // illegal parent id character
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",     // flags too short
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-001",   // flags too long
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-.0",    // illegal flags character
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",    // wrong separators
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // leading space
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.x",  // future version: field must follow a '-'
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     // future version shorter than 55
    };
    for (const char* header : invalid) {
        EXPECT_FALSE(t::ParseTraceparent(header).has_value()) << "accepted: \"" << header << "\"";
    }
}

TEST(ObservabilityTraceparent, AHigherVersionIsReadAsVersion00WhenItsPrefixFits) {
    const auto plain = t::ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    ASSERT_TRUE(plain.has_value());
    EXPECT_EQ(t::ToHex(plain->trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    const auto extended =
        t::ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like");
    ASSERT_TRUE(extended.has_value());
    EXPECT_EQ(t::ToHex(extended->span_id), "00f067aa0ba902b7");
    // What we send on is always version 00.
    EXPECT_EQ(t::FormatTraceparent(*extended), kValid);
}

TEST(ObservabilityTraceparent, RandomIdsAreNonZeroAndDistinct) {
    std::set<std::string> traces;
    std::set<std::string> spans;
    for (int i = 0; i < 1000; ++i) {
        traces.insert(t::ToHex(t::NewTraceId()));
        spans.insert(t::ToHex(t::NewSpanId()));
    }
    EXPECT_EQ(traces.size(), 1000u);
    EXPECT_EQ(spans.size(), 1000u);
    EXPECT_EQ(traces.count(std::string(32, '0')), 0u);
    const t::Span child = t::StartSpan("child", t::SpanKind::kServer, t::ParseTraceparent(kValid));
    EXPECT_EQ(t::ToHex(child.context.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_EQ(t::ToHex(child.parent_span_id), "00f067aa0ba902b7");
    EXPECT_NE(t::ToHex(child.context.span_id), "00f067aa0ba902b7");
    const t::Span root = t::StartSpan("root", t::SpanKind::kInternal);
    EXPECT_TRUE(root.context.IsValid());
    EXPECT_TRUE(root.context.Sampled());
    EXPECT_EQ(t::ToHex(root.parent_span_id), std::string(16, '0'));
}

TEST(ObservabilityOtlp, ResourceAttributesArePercentDecodedAndMalformedListsRejected) {
    const auto parsed = t::ParseResourceAttributes(" deployment.environment = prod , team=a%2Cb%3Dc%20d,x=%E2%82%AC");
    ASSERT_TRUE(parsed.has_value());
    ASSERT_EQ(parsed->size(), 3u);
    EXPECT_EQ((*parsed)[0], (std::pair<std::string, std::string>{"deployment.environment", "prod"}));
    EXPECT_EQ((*parsed)[1].second, "a,b=c d");
    EXPECT_EQ((*parsed)[2].second, "\xe2\x82\xac");
    EXPECT_FALSE(t::ParseResourceAttributes("novalue").has_value());
    EXPECT_FALSE(t::ParseResourceAttributes("=v").has_value());
    EXPECT_FALSE(t::ParseResourceAttributes("k=%zz").has_value());
    EXPECT_FALSE(t::ParseResourceAttributes("k=%2").has_value());
}

TEST(ObservabilityOtlp, EnvironmentDecidesEndpointServiceNameAndResource) {
    auto o = t::ExporterOptions::FromEnvironment({});
    EXPECT_EQ(o.endpoint, "");
    o = t::ExporterOptions::FromEnvironment({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"}});
    EXPECT_EQ(o.endpoint, "http://collector:4318/v1/traces");
    o = t::ExporterOptions::FromEnvironment({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base/"}});
    EXPECT_EQ(o.endpoint, "http://collector:4318/base/v1/traces");
    // The per-signal variable is used as is and wins.
    o = t::ExporterOptions::FromEnvironment({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"},
                                             {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:9999/custom"}});
    EXPECT_EQ(o.endpoint, "http://b:9999/custom");
    o = t::ExporterOptions::FromEnvironment(
        {{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"}, {"OTEL_SDK_DISABLED", "true"}});
    EXPECT_EQ(o.endpoint, "");
    o = t::ExporterOptions::FromEnvironment({{"OTEL_SERVICE_NAME", "relay-eu"},
                                             {"OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,region=eu%2D1"},
                                             {"OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20x"},
                                             {"OTEL_EXPORTER_OTLP_TIMEOUT", "1500"}});
    ASSERT_GE(o.resource.size(), 2u);
    EXPECT_EQ(o.resource[0], (std::pair<std::string, std::string>{"service.name", "relay-eu"}));
    EXPECT_EQ(o.resource[1], (std::pair<std::string, std::string>{"region", "eu-1"}));
    EXPECT_EQ(o.headers, std::vector<std::string>{"Authorization: Bearer x"});
    EXPECT_EQ(o.timeout, std::chrono::milliseconds(1500));
    o = t::ExporterOptions::FromEnvironment({{"OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"}});
    EXPECT_EQ(o.resource[0].second, "from-attrs");
    o = t::ExporterOptions::FromEnvironment({{"OTEL_RESOURCE_ATTRIBUTES", "broken"}}, "eventlog-relay");
    EXPECT_EQ(o.resource[0].second, "eventlog-relay");
    EXPECT_THROW(t::ExporterOptions::FromEnvironment({{"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}}), eventlog::ConfigError);
    EXPECT_THROW(t::ExporterOptions::FromEnvironment({{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"}}), eventlog::ConfigError);
}

TEST(ObservabilityOtlp, EncodedRequestPassesTheOpentelemetryProtoRoundTrip) {
    const std::string json = t::EncodeTraceRequest({{"service.name", "eventlog"}, {"region", "eu \"1\""}},
                                                   {SampleSpan(), t::StartSpan("root", t::SpanKind::kServer)});
    const std::string out = CheckWithOpentelemetryProto(json);
    EXPECT_NE(
        out.find("resource service.name={\"stringValue\":\"eventlog\"};region={\"stringValue\":\"eu \\\"1\\\"\"}"),
        std::string::npos)
        << out;
    EXPECT_NE(out.find("span 0af7651916cd43dd8448eb211c80319c b7ad6b7169203331 parent=00f067aa0ba902b7 "
                       "name=relay.batch \"quoted\"\n kind=5 start=1700000000123456789 end=1700000001000000001 "
                       "flags=1 status=2:ClickHouse 241: memory limit "
                       "attrs=messaging.system={\"stringValue\":\"postgresql\"};"
                       "messaging.batch.message_count={\"intValue\":\"9007199254740993\"};"
                       "ratio={\"doubleValue\":0.25};retried={\"boolValue\":true} dropped_links=7\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("link 11111111111111111111111111111111 2222222222222222 flags=1 "
                       "attrs=messaging.message.id={\"stringValue\":\"e1\"}\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("link 33333333333333333333333333333333 4444444444444444 flags=0 attrs=\n"), std::string::npos)
        << out;
}

TEST(ObservabilityOtlp, TheCheckerRejectsAMisspeltFieldAndBase64IdsSoItsVerdictMeansSomething) {
    const std::string dir = std::string(EVENTLOG_SOURCE_DIR) + "/tests/protocol";
    for (const std::string& json :
         {std::string(R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c",)"
                      R"("spanId":"b7ad6b7169203331","name":"x","startTimeUnixNanos":"1"}]}]}]})"),
          std::string(R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"CvdlGRbNQ92ESOshHIAxnA==",)"
                      R"("spanId":"b7ad6b7169203331","name":"x"}]}]}]})"),
          std::string(R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c",)"
                      R"("spanId":"b7ad6b7169203331","name":"x","kind":"SPAN_KIND_SERVER"}]}]}]})")}) {
        const auto path = std::filesystem::temp_directory_path() / "eventlog_otlp_bad.json";
        {
            std::ofstream f(path, std::ios::binary);
            f << json;
        }
        const auto r = RunCommand("cd " + ShellQuote(dir) + " && node otlp_check.js " + ShellQuote(path.string()));
        std::filesystem::remove(path);
        EXPECT_EQ(r.exit_code, 1) << json << "\n" << r.output;
    }
}

TEST(ObservabilityOtlp, ExporterPostsBatchesThatTheReferenceDecoderAccepts) {
    HttpListener collector;
    t::ExporterOptions options;
    options.endpoint = collector.Url() + "/v1/traces";
    options.resource = {{"service.name", "eventlog-test"}};
    options.max_batch_spans = 3;
    options.batch_delay = std::chrono::milliseconds(50);
    t::TraceExporter exporter(options);
    ASSERT_TRUE(exporter.Enabled());
    for (int i = 0; i < 4; ++i) exporter.Export(SampleSpan());
    t::Span unsampled = SampleSpan();
    unsampled.context.flags = 0;
    exporter.Export(unsampled);  // not recorded: its trace was not sampled
    ASSERT_TRUE(exporter.Flush(std::chrono::seconds(5)));
    EXPECT_EQ(exporter.ExportedSpans(), 4u);
    EXPECT_EQ(exporter.DroppedSpans(), 0u);
    const auto requests = collector.Requests();
    ASSERT_EQ(requests.size(), 2u);  // a full batch of 3, then the flush sends the last one
    for (const auto& r : requests) {
        EXPECT_EQ(r.method, "POST");
        EXPECT_EQ(r.path, "/v1/traces");
        EXPECT_EQ(r.headers.at("content-type"), "application/json");
        const std::string out = CheckWithOpentelemetryProto(r.body);
        EXPECT_NE(out.find("resource service.name={\"stringValue\":\"eventlog-test\"}"), std::string::npos) << out;
    }
}

TEST(ObservabilityOtlp, RejectedSpansReportedByTheCollectorCountAsDropped) {
    HttpListener collector;
    collector.SetResponder([](const HttpListener::Request&) {
        return HttpListener::Response{200, {}, R"({"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}})"};
    });
    t::ExporterOptions options;
    options.endpoint = collector.Url() + "/v1/traces";
    options.max_batch_spans = 10;
    t::TraceExporter exporter(options);
    for (int i = 0; i < 5; ++i) exporter.Export(SampleSpan());
    ASSERT_TRUE(exporter.Flush(std::chrono::seconds(5)));
    EXPECT_EQ(exporter.ExportedSpans(), 3u);
    EXPECT_EQ(exporter.DroppedSpans(), 2u);
}

TEST(ObservabilityOtlp, UnsetEndpointStartsNoThreadAndExportsNothing) {
    const std::size_t before = ThreadCount();
    t::TraceExporter exporter(t::ExporterOptions::FromEnvironment({{"OTEL_SERVICE_NAME", "x"}}));
    EXPECT_FALSE(exporter.Enabled());
    EXPECT_EQ(ThreadCount(), before);
    for (int i = 0; i < 10; ++i) exporter.Export(SampleSpan());
    EXPECT_TRUE(exporter.Flush(std::chrono::milliseconds(1)));
    EXPECT_EQ(exporter.ExportedSpans(), 0u);
    EXPECT_EQ(exporter.DroppedSpans(), 0u);
    EXPECT_EQ(ThreadCount(), before);
}

TEST(ObservabilityOtlp, AClosedPortCountsDroppedSpansAndExportStaysFast) {
    const int port = eventlog::testing::ClosedLoopbackPort();
    t::ExporterOptions options;
    options.endpoint = "http://127.0.0.1:" + std::to_string(port) + "/v1/traces";
    options.max_queue_spans = 1000;
    options.max_batch_spans = 100;
    options.batch_delay = std::chrono::milliseconds(10);
    options.timeout = std::chrono::milliseconds(500);
    t::TraceExporter exporter(options);
    const t::Span span = SampleSpan();
    auto slowest = std::chrono::nanoseconds::zero();
    const auto start = std::chrono::steady_clock::now();
    constexpr int kSpans = 20000;
    for (int i = 0; i < kSpans; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        exporter.Export(span);
        slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
    }
    const auto total = std::chrono::steady_clock::now() - start;
    EXPECT_TRUE(exporter.Flush(std::chrono::seconds(10)));
    EXPECT_EQ(exporter.ExportedSpans(), 0u);
    // Every span is accounted for: dropped at the full queue or with its failed batch.
    EXPECT_EQ(exporter.DroppedSpans(), static_cast<std::uint64_t>(kSpans));
    // Export never waits for the network: 20000 calls, each a short lock and a copy of the span (about 1 us in a
    // release build, 25 us under AddressSanitizer). The bounds leave room for a loaded machine.
    EXPECT_LT(total, std::chrono::seconds(3))
        << "20000 Export() calls took " << std::chrono::duration<double>(total).count() << " s";
    EXPECT_LT(slowest, std::chrono::milliseconds(250))
        << "slowest Export(): " << std::chrono::duration<double>(slowest).count() << " s";
}

TEST(ObservabilityOtlp, ACollectorThatNeverAnswersCostsTheCallerNothing) {
    // A socket that listens but never accepts: connections complete in the kernel's backlog, requests are sent,
    // no answer comes, so every export request runs into its timeout.
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(fd, 64), 0);
    ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
    {
        t::ExporterOptions options;
        options.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/v1/traces";
        options.max_queue_spans = 100;
        options.max_batch_spans = 50;
        options.batch_delay = std::chrono::milliseconds(10);
        options.timeout = std::chrono::milliseconds(1000);
        t::TraceExporter exporter(options);
        const t::Span span = SampleSpan();
        auto slowest = std::chrono::nanoseconds::zero();
        for (int i = 0; i < 1000; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            exporter.Export(span);
            slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
            if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let batches start
        }
        // Blocking on a request would take its whole 1 s timeout.
        EXPECT_LT(slowest, std::chrono::milliseconds(250))
            << "slowest Export(): " << std::chrono::duration<double>(slowest).count() << " s";
        EXPECT_TRUE(exporter.Flush(std::chrono::seconds(10)));
        EXPECT_EQ(exporter.ExportedSpans(), 0u);
        EXPECT_EQ(exporter.DroppedSpans(), 1000u);
    }
    ::close(fd);
}
