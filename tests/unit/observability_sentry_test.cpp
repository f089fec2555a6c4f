#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <eventlog/core/error.hpp>
#include <eventlog/observability/sentry.hpp>
#include <eventlog/observability/version.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/http_listener.hpp"
#include "support/run_command.hpp"

namespace s = eventlog::sentry;
using eventlog::testing::HttpListener;
using eventlog::testing::RunCommand;
using eventlog::testing::ShellQuote;

namespace {

constexpr const char* kKey = "0123456789abcdef0123456789abcdef";
constexpr const char* kEventId = "fc6d8c0c43fc4630ad850ee518f1b9d0";

/// What Sentry's Python SDK (Debian's python3-sentry-sdk) reads from `envelope`, one `path=json` line per field.
/// Fails the test (never skips) when the package is missing or the envelope does not parse.
std::string ParseWithSentrySdk(const std::string& envelope, const std::vector<std::string>& dsn_args = {}) {
    const auto check = RunCommand("/usr/bin/python3 -c 'import sentry_sdk.envelope'");
    EXPECT_EQ(check.exit_code, 0) << "Sentry's Python SDK is missing: install Debian's python3-sentry-sdk "
                                     "(scripts/install-deps.sh does)\n"
                                  << check.output;
    const auto path =
        std::filesystem::temp_directory_path() / ("eventlog_sentry_" + std::to_string(::getpid()) + ".envelope");
    {
        std::ofstream f(path, std::ios::binary);
        f << envelope;
    }
    std::string command = "/usr/bin/python3 " +
                          ShellQuote(std::string(EVENTLOG_SOURCE_DIR) + "/tests/protocol/sentry_check.py") + " " +
                          ShellQuote(path.string());
    for (const auto& a : dsn_args) command += " " + ShellQuote(a);
    const auto r = RunCommand(command);
    std::filesystem::remove(path);
    EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- envelope ---\n" << envelope;
    return r.output;
}

bool Has(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

s::Report BatchFailed(const std::string& code = "241") {
    eventlog::RejectedError error("Code: 241. DB::Exception: Memory limit \"exceeded\"\nwhile inserting é");
    error.SetOrigin(eventlog::ErrorSource::kClickHouse, code);
    s::Report r = s::ReportFrom(error, "batch_failed");
    r.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    r.span_id = "00f067aa0ba902b7";
    return r;
}

s::ClientOptions Options(const std::string& dsn) {
    s::ClientOptions o;
    o.dsn = s::Dsn::Parse(dsn);
    o.environment = "prod";
    o.release = "eventlog@9.9.9";
    o.server_name = "relay-1";
    return o;
}

}  // namespace

TEST(ObservabilitySentry, DsnIsParsedIntoEnvelopeUrlAndAuthHeader) {
    const auto dsn = s::Dsn::Parse(std::string("https://") + kKey + "@o1.ingest.sentry.io/4505");
    ASSERT_TRUE(dsn.has_value());
    EXPECT_EQ(dsn->EnvelopeUrl(), "https://o1.ingest.sentry.io/api/4505/envelope/");
    EXPECT_EQ(dsn->AuthHeader(), std::string("Sentry sentry_version=7, sentry_key=") + kKey +
                                     ", sentry_client=eventlog/" + std::string(eventlog::observability::Version()));
    const auto with_path = s::Dsn::Parse("http://key:legacysecret@[::1]:9000/sub/path/42");
    ASSERT_TRUE(with_path.has_value());
    EXPECT_EQ(with_path->EnvelopeUrl(), "http://[::1]:9000/sub/path/api/42/envelope/");
    EXPECT_EQ(with_path->ToString(), "http://key@[::1]:9000/sub/path/42");  // the legacy secret is dropped
    EXPECT_EQ(with_path->Redacted(), "http://***@[::1]:9000/sub/path/42");
    for (const char* bad :
         {"", "sentry.io/1", "ftp://k@h/1", "https://h/1", "https://@h/1", "https://k@h", "https://k@h/",
          "https://k@h/abc", "https://k@h:port/1", "https://k@h/1?x=1", "https://k@/1", "https://k@[::1/1"}) {
        EXPECT_FALSE(s::Dsn::Parse(bad).has_value()) << bad;
    }
}

TEST(ObservabilitySentry, AMalformedDsnIsAConfigErrorThatDoesNotShowTheKey) {
    try {
        s::ClientOptions::FromEnvironment({{"SENTRY_CONFIG_DSN", std::string("https://") + kKey + "@host/notanumber"}});
        FAIL() << "no ConfigError";
    } catch (const eventlog::ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("SENTRY_CONFIG_DSN"), std::string::npos);
        EXPECT_EQ(std::string(e.what()).find(kKey), std::string::npos) << e.what();
    }
    const auto o = s::ClientOptions::FromEnvironment({{"ENVIRONMENT", "Staging"}});
    EXPECT_FALSE(o.dsn.has_value());
    EXPECT_EQ(o.environment, "Staging");
    EXPECT_EQ(
        s::ClientOptions::FromEnvironment({{"SENTRY_CONFIG_ENVIRONMENT", "prod"}, {"ENVIRONMENT", "x"}}).environment,
        "prod");
    EXPECT_EQ(s::ClientOptions::FromEnvironment({}).environment, "Local");
}

TEST(ObservabilitySentry, EnvelopeIsReadBySentrysOwnEnvelopeParser) {
    const std::string dsn_text = std::string("https://") + kKey + "@sentry.example.com:8443/prefix/77";
    const s::ClientOptions options = Options(dsn_text);
    const std::string envelope = s::BuildEnvelope(*options.dsn, options, BatchFailed(), kEventId);
    const std::string out =
        ParseWithSentrySdk(envelope, {dsn_text, options.dsn->EnvelopeUrl(), options.dsn->AuthHeader()});
    EXPECT_TRUE(Has(out, std::string("envelope.event_id=\"") + kEventId + "\"")) << out;
    EXPECT_TRUE(Has(out, "envelope.dsn=\"https://" + std::string(kKey) + "@sentry.example.com:8443/prefix/77\""))
        << out;
    EXPECT_NE(out.find("envelope.sent_at=\"20"), std::string::npos) << out;
    EXPECT_TRUE(Has(out, "items.count=1")) << out;
    EXPECT_TRUE(Has(out, "items[0].type=\"event\"")) << out;
    // The declared length is the payload's: the parser read exactly that many bytes.
    const auto length_at = out.find("items[0].length=");
    ASSERT_NE(length_at, std::string::npos) << out;
    const std::string length = out.substr(length_at + 16, out.find('\n', length_at) - length_at - 16);
    EXPECT_TRUE(Has(out, "items[0].raw_payload_bytes=" + length)) << out;
    EXPECT_TRUE(Has(out, std::string("event.event_id=\"") + kEventId + "\"")) << out;
    EXPECT_TRUE(Has(out, "event.platform=\"native\"")) << out;
    EXPECT_TRUE(Has(out, "event.level=\"error\"")) << out;
    EXPECT_TRUE(Has(out, "event.environment=\"prod\"")) << out;
    EXPECT_TRUE(Has(out, "event.release=\"eventlog@9.9.9\"")) << out;
    EXPECT_TRUE(Has(out, "event.server_name=\"relay-1\"")) << out;
    EXPECT_TRUE(Has(out, "event.message.formatted=\"batch_failed\"")) << out;
    EXPECT_TRUE(Has(out, "event.exception.values[0].type=\"batch_failed\"")) << out;
    EXPECT_TRUE(Has(out,
                    "event.exception.values[0].value=\"Code: 241. DB::Exception: Memory limit \\\"exceeded\\\"\\n"
                    "while inserting é\""))
        << out;
    EXPECT_TRUE(Has(out, "event.tags.error.source=\"clickhouse\"")) << out;
    EXPECT_TRUE(Has(out, "event.tags.error.code=\"241\"")) << out;
    EXPECT_TRUE(Has(out, "event.tags.error.kind=\"rejected\"")) << out;
    EXPECT_TRUE(Has(out, "event.fingerprint[0]=\"batch_failed\"")) << out;
    EXPECT_TRUE(Has(out, "event.contexts.trace.trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"")) << out;
    EXPECT_TRUE(Has(out, "event.contexts.trace.span_id=\"00f067aa0ba902b7\"")) << out;
    EXPECT_NE(out.find("event.timestamp=\"20"), std::string::npos) << out;
    // The SDK's own DSN parser maps the DSN to the same URL and auth fields.
    EXPECT_TRUE(Has(out, "check.url_matches=true")) << out;
    EXPECT_TRUE(Has(out, "check.auth_matches=true")) << out;
    EXPECT_TRUE(Has(out, "check.auth_client=\"eventlog/" + std::string(eventlog::observability::Version()) + "\""))
        << out;
}

TEST(ObservabilitySentry, TheSdkRejectsAnEnvelopeWithoutAnEventSoItsVerdictMeansSomething) {
    const auto path = std::filesystem::temp_directory_path() / "eventlog_sentry_bad.envelope";
    {
        std::ofstream f(path, std::ios::binary);
        f << "{\"event_id\":\"" << kEventId << "\"}\n{\"type\":\"attachment\",\"length\":2}\nab\n";
    }
    const auto r = RunCommand("/usr/bin/python3 " +
                              ShellQuote(std::string(EVENTLOG_SOURCE_DIR) + "/tests/protocol/sentry_check.py") + " " +
                              ShellQuote(path.string()));
    std::filesystem::remove(path);
    EXPECT_EQ(r.exit_code, 1) << r.output;
}

TEST(ObservabilitySentry, ClientPostsToTheEnvelopeEndpointWithTheAuthHeaderAndRateLimitsRepeats) {
    HttpListener sentry;
    s::SentryClient client(
        Options("http://" + std::string(kKey) + "@127.0.0.1:" + std::to_string(sentry.Port()) + "/42"));
    ASSERT_TRUE(client.Enabled());
    const std::string first = client.Capture(BatchFailed("241"));
    EXPECT_EQ(first.size(), 32u);
    EXPECT_EQ(client.Capture(BatchFailed("241")), "");  // same fingerprint within the interval
    EXPECT_EQ(client.Capture(BatchFailed("241")), "");
    EXPECT_NE(client.Capture(BatchFailed("159")), "");  // another code: another fingerprint
    ASSERT_TRUE(client.Flush(std::chrono::seconds(5)));
    EXPECT_EQ(client.SentEvents(), 2u);
    EXPECT_EQ(client.DroppedEvents(), 2u);
    const auto requests = sentry.Requests();
    ASSERT_EQ(requests.size(), 2u);
    for (const auto& r : requests) {
        EXPECT_EQ(r.method, "POST");
        EXPECT_EQ(r.path, "/api/42/envelope/");
        EXPECT_EQ(r.headers.at("x-sentry-auth"), std::string("Sentry sentry_version=7, sentry_key=") + kKey +
                                                     ", sentry_client=eventlog/" +
                                                     std::string(eventlog::observability::Version()));
        EXPECT_EQ(r.headers.at("content-type"), "application/x-sentry-envelope");
    }
    const std::string out = ParseWithSentrySdk(requests[0].body);
    EXPECT_TRUE(Has(out, "event.event_id=\"" + first + "\"")) << out;
    EXPECT_TRUE(Has(out, "event.tags.error.code=\"241\"")) << out;
    EXPECT_TRUE(Has(ParseWithSentrySdk(requests[1].body), "event.tags.error.code=\"159\""));
}

TEST(ObservabilitySentry, A429StopsSendingUntilRetryAfter) {
    HttpListener sentry;
    sentry.SetResponder([](const HttpListener::Request&) {
        return HttpListener::Response{429, {"Retry-After: 60"}, "{}"};
    });
    s::SentryClient client(Options("http://k@127.0.0.1:" + std::to_string(sentry.Port()) + "/1"));
    EXPECT_NE(client.Capture(BatchFailed("1")), "");
    ASSERT_TRUE(client.Flush(std::chrono::seconds(5)));
    EXPECT_EQ(client.Capture(BatchFailed("2")), "");  // blocked for 60 s
    EXPECT_EQ(client.Capture(BatchFailed("3")), "");
    ASSERT_TRUE(client.Flush(std::chrono::seconds(5)));
    EXPECT_EQ(sentry.Requests().size(), 1u);
    EXPECT_EQ(client.SentEvents(), 0u);
    EXPECT_EQ(client.DroppedEvents(), 3u);
}

TEST(ObservabilitySentry, RateLimitHeaderBlocksOnlyWhenItCoversErrors) {
    HttpListener sentry;
    int calls = 0;
    sentry.SetResponder([&calls](const HttpListener::Request&) {
        ++calls;
        // First: limits transactions only (not us). Second: limits errors for 60 s.
        return HttpListener::Response{
            200,
            {calls == 1 ? "X-Sentry-Rate-Limits: 60:transaction:key" : "X-Sentry-Rate-Limits: 60:error;default:key"},
            "{}"};
    });
    s::SentryClient client(Options("http://k@127.0.0.1:" + std::to_string(sentry.Port()) + "/1"));
    EXPECT_NE(client.Capture(BatchFailed("1")), "");
    ASSERT_TRUE(client.Flush(std::chrono::seconds(5)));
    EXPECT_NE(client.Capture(BatchFailed("2")), "");
    ASSERT_TRUE(client.Flush(std::chrono::seconds(5)));
    EXPECT_EQ(client.Capture(BatchFailed("3")), "");
    EXPECT_EQ(sentry.Requests().size(), 2u);
    EXPECT_EQ(client.SentEvents(), 2u);
}

TEST(ObservabilitySentry, NoDsnMeansNoThreadAndNothingSent) {
    std::size_t before = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++before;
    s::SentryClient client(s::ClientOptions::FromEnvironment({{"SENTRY_CONFIG_ENVIRONMENT", "prod"}}));
    EXPECT_FALSE(client.Enabled());
    std::size_t after = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++after;
    EXPECT_EQ(after, before);
    EXPECT_EQ(client.Capture(BatchFailed()), "");
    EXPECT_EQ(client.SentEvents(), 0u);
    EXPECT_EQ(client.DroppedEvents(), 0u);
}

TEST(ObservabilitySentry, AnUnreachableSentryIsLoggedOnceWithoutTheKey) {
    const int port = eventlog::testing::ClosedLoopbackPort();
    auto options = Options("http://" + std::string(kKey) + "@127.0.0.1:" + std::to_string(port) + "/5");
    ::testing::internal::CaptureStderr();
    {
        s::SentryClient client(options);
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < 50; ++i) client.Capture(BatchFailed(std::to_string(i)));
        EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
        EXPECT_TRUE(client.Flush(std::chrono::seconds(10)));
        EXPECT_EQ(client.SentEvents(), 0u);
        EXPECT_EQ(client.DroppedEvents(), 50u);
    }
    const std::string logged = ::testing::internal::GetCapturedStderr();
    EXPECT_NE(logged.find("sentry_send_failed"), std::string::npos) << logged;
    EXPECT_NE(logged.find("http://***@127.0.0.1"), std::string::npos) << logged;
    EXPECT_EQ(logged.find(kKey), std::string::npos) << logged;
    EXPECT_EQ(logged.find("sentry_send_failed"), logged.rfind("sentry_send_failed")) << "logged more than once";
}
