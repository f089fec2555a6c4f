#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <eventlog/observability/metrics.hpp>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/run_command.hpp"

namespace m = eventlog::metrics;
using eventlog::testing::CommandResult;
using eventlog::testing::RunCommand;

namespace {

/// promtool from Debian's `prometheus` package; a missing promtool is a failure, never a skip.
void RequirePromtool() {
    const CommandResult r = RunCommand("command -v promtool", "");
    ASSERT_EQ(r.exit_code, 0) << "promtool not found: install Debian's `prometheus` package "
                                 "(scripts/install-deps.sh does)";
}

constexpr std::string_view kRouteLabels[] = {"route", "status"};
constexpr std::string_view kPathLabel[] = {"path"};
constexpr double kBuckets[] = {0.1, 1, 2.5};

constexpr m::Spec kHostileCounter{"test_requests_total", m::Type::kCounter,
                                  "Requests with \\ backslash,\nnewline and \"quotes\" in HELP.", kRouteLabels};
constexpr m::Spec kHostileGauge{"test_path_bytes", m::Type::kGauge, "A gauge labelled by hostile text.", kPathLabel};
constexpr m::Spec kLatency{"test_latency_seconds", m::Type::kHistogram, "Latency.", kRouteLabels, kBuckets};
constexpr m::Spec kPlain{"test_plain_seconds", m::Type::kHistogram, "A histogram without labels.", {}, kBuckets};
constexpr m::Spec kNanGauge{"test_nan_ratio", m::Type::kGauge, "NaN renders as Prometheus spells it."};
constexpr m::Spec kBacklog{"test_backlog_events", m::Type::kGauge, "Read at scrape time.", kPathLabel};

m::Registry& FilledRegistry() {
    static auto* registry = [] {
        auto* r = new m::Registry();
        auto& requests = r->AddCounter(kHostileCounter);
        requests.WithLabels({"/api/v1/events", "200"}).Inc(3);
        requests.WithLabels({"quote\" back\\slash", "500"}).Inc();
        requests.WithLabels({"new\nline \xff bad utf8, \xe2\x82\xac euro", "400"}).Inc(2.5);
        r->AddGauge(kHostileGauge).WithLabels({"C:\\temp\\\"x\"\n"}).Set(-1.5);
        auto& latency = r->AddHistogram(kLatency);
        latency.WithLabels({"/a", "200"}).Observe(0.05);
        latency.WithLabels({"/a", "200"}).Observe(2);
        latency.WithLabels({"/a", "200"}).Observe(100);
        r->AddHistogram(kPlain).Get().Observe(1);
        r->AddCallback(kBacklog, [] { return std::vector<m::CallbackSample>{{{"b"}, 7}, {{"a"}, 1e21}}; });
        m::AddBuildInfo(*r, "0.1.0", "abc\"123");
        for (const m::Spec* spec : m::kAllSpecs) {
            if (spec == &m::kBuildInfo) continue;
            if (spec->type == m::Type::kCounter) r->AddCounter(*spec);
            if (spec->type == m::Type::kGauge) r->AddGauge(*spec);
            if (spec->type == m::Type::kHistogram) r->AddHistogram(*spec).Get().Observe(0.3);
        }
        r->AddGauge(kNanGauge).Get().Set(std::numeric_limits<double>::quiet_NaN());
        return r;
    }();
    return *registry;
}

}  // namespace

TEST(ObservabilityMetrics, RenderedTextPassesPromtoolCheckMetrics) {
    ASSERT_NO_FATAL_FAILURE(RequirePromtool());
    const std::string text = FilledRegistry().Render();
    const CommandResult r = RunCommand("promtool check metrics", text);
    EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- text ---\n" << text;
    EXPECT_EQ(r.output, "");
}

TEST(ObservabilityMetrics, PromtoolRejectsAnUnescapedLabelValueSoTheCheckAboveIsReal) {
    ASSERT_NO_FATAL_FAILURE(RequirePromtool());
    const CommandResult r =
        RunCommand("promtool check metrics", "# HELP x_total x\n# TYPE x_total counter\nx_total{a=\"q\"q\"} 1\n");
    EXPECT_NE(r.exit_code, 0) << r.output;
}

TEST(ObservabilityMetrics, LabelValuesAndHelpAreEscapedAsTheTextFormatSays) {
    const std::string text = FilledRegistry().Render();
    EXPECT_NE(text.find("# HELP test_requests_total Requests with \\\\ backslash,\\nnewline and \"quotes\" in HELP.\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("test_requests_total{route=\"quote\\\" back\\\\slash\",status=\"500\"} 1\n"), std::string::npos)
        << text;
    // Invalid UTF-8 becomes U+FFFD; valid multi-byte characters are kept.
    EXPECT_NE(text.find("{route=\"new\\nline \xef\xbf\xbd bad utf8, \xe2\x82\xac euro\",status=\"400\"} 2.5\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("test_path_bytes{path=\"C:\\\\temp\\\\\\\"x\\\"\\n\"} -1.5\n"), std::string::npos) << text;
    EXPECT_NE(text.find("test_nan_ratio NaN\n"), std::string::npos) << text;
}

TEST(ObservabilityMetrics, HistogramRendersCumulativeBucketsInfSumAndCount) {
    const std::string text = FilledRegistry().Render();
    EXPECT_NE(text.find("# TYPE test_latency_seconds histogram\n"
                        "test_latency_seconds_bucket{route=\"/a\",status=\"200\",le=\"0.1\"} 1\n"
                        "test_latency_seconds_bucket{route=\"/a\",status=\"200\",le=\"1\"} 1\n"
                        "test_latency_seconds_bucket{route=\"/a\",status=\"200\",le=\"2.5\"} 2\n"
                        "test_latency_seconds_bucket{route=\"/a\",status=\"200\",le=\"+Inf\"} 3\n"
                        "test_latency_seconds_sum{route=\"/a\",status=\"200\"} 102.05\n"
                        "test_latency_seconds_count{route=\"/a\",status=\"200\"} 3\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("test_plain_seconds_bucket{le=\"+Inf\"} 1\ntest_plain_seconds_sum 1\n"
                        "test_plain_seconds_count 1\n"),
              std::string::npos)
        << text;
}

TEST(ObservabilityMetrics, CallbackGaugeIsComputedAtScrapeTimeSortedByLabels) {
    m::Registry r;
    int calls = 0;
    r.AddCallback(kBacklog, [&calls] {
        ++calls;
        return std::vector<m::CallbackSample>{{{"z"}, static_cast<double>(calls)}, {{"a"}, 0}};
    });
    EXPECT_EQ(r.Render(),
              "# HELP test_backlog_events Read at scrape time.\n# TYPE test_backlog_events gauge\n"
              "test_backlog_events{path=\"a\"} 0\ntest_backlog_events{path=\"z\"} 1\n");
    EXPECT_NE(r.Render().find("test_backlog_events{path=\"z\"} 2\n"), std::string::npos);
}

TEST(ObservabilityMetrics, ACallbackThatThrowsLeavesTheMetricWithoutSamples) {
    m::Registry r;
    r.AddCallback(kBacklog, []() -> std::vector<m::CallbackSample> { throw std::runtime_error("pg down"); });
    r.AddCounter(kHostileCounter).WithLabels({"/x", "200"}).Inc();
    const std::string text = r.Render();
    EXPECT_EQ(text.find("test_backlog_events{"), std::string::npos) << text;
    EXPECT_NE(text.find("test_requests_total{route=\"/x\",status=\"200\"} 1\n"), std::string::npos) << text;
}

TEST(ObservabilityMetrics, BadDefinitionsAreRejectedAtRegistration) {
    m::Registry r;
    EXPECT_THROW(r.AddCounter({"no_suffix", m::Type::kCounter, "h"}), std::invalid_argument);
    EXPECT_THROW(r.AddGauge({"bad-name", m::Type::kGauge, "h"}), std::invalid_argument);
    EXPECT_THROW(r.AddGauge({"x_total", m::Type::kCounter, "h"}), std::invalid_argument);
    constexpr std::string_view le[] = {"le"};
    EXPECT_THROW(r.AddHistogram({"h_seconds", m::Type::kHistogram, "h", le, kBuckets}), std::invalid_argument);
    constexpr double unsorted[] = {1, 0.5};
    EXPECT_THROW(r.AddHistogram({"h_seconds", m::Type::kHistogram, "h", {}, unsorted}), std::invalid_argument);
    r.AddGauge({"dup", m::Type::kGauge, "h"});
    EXPECT_THROW(r.AddGauge({"dup", m::Type::kGauge, "h"}), std::invalid_argument);
    EXPECT_THROW(r.AddCounter(kHostileCounter).WithLabels({"only one"}), std::invalid_argument);
}

TEST(ObservabilityMetrics, SeriesBeyondTheCapFoldIntoOneOtherSeries) {
    m::Registry r;
    auto& family = r.AddGauge(kHostileGauge);
    for (std::size_t i = 0; i < m::GaugeFamily::kMaxSeries + 50; ++i) family.WithLabels({std::to_string(i)}).Inc();
    const std::string text = r.Render();
    EXPECT_NE(text.find("test_path_bytes{path=\"other\"} 50\n"), std::string::npos);
    EXPECT_EQ(text.find("{path=\"" + std::to_string(m::GaugeFamily::kMaxSeries) + "\"}"), std::string::npos);
}

TEST(ObservabilityMetrics, ConcurrentIncrementsAreNotLost) {
    m::Registry r;
    auto& counter = r.AddCounter(kHostileCounter).WithLabels({"/x", "200"});
    auto& histogram = r.AddHistogram(kPlain).Get();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 10000; ++i) {
                counter.Inc();
                histogram.Observe(0.5);
            }
        });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(counter.Value(), 40000);
    EXPECT_EQ(histogram.Read().cumulative.back(), 40000u);
    EXPECT_EQ(histogram.Read().sum, 20000);
}

TEST(ObservabilityMetrics, TheIssueMetricNamesAreAllDefinedAndDocumented) {
    const std::vector<std::string> expected = {"eventlog_outbox_pending_events",
                                               "eventlog_outbox_oldest_pending_age_seconds",
                                               "eventlog_outbox_retained_bytes",
                                               "eventlog_relay_delivered_events_total",
                                               "eventlog_relay_batches_total",
                                               "eventlog_relay_delivery_lag_seconds",
                                               "eventlog_relay_insert_duration_seconds",
                                               "eventlog_relay_retries_total",
                                               "eventlog_relay_last_success_timestamp_seconds",
                                               "eventlog_dead_letter_events",
                                               "eventlog_http_requests_total",
                                               "eventlog_http_request_duration_seconds",
                                               "eventlog_pg_pool_connections",
                                               "eventlog_build_info"};
    std::vector<std::string> defined;
    for (const m::Spec* spec : m::kAllSpecs) defined.emplace_back(spec->name);
    for (const auto& name : expected) {
        EXPECT_NE(std::find(defined.begin(), defined.end(), name), defined.end()) << name;
    }
    std::ifstream doc(std::string(EVENTLOG_SOURCE_DIR) + "/docs/observability.md");
    ASSERT_TRUE(doc) << "docs/observability.md is missing";
    const std::string text((std::istreambuf_iterator<char>(doc)), std::istreambuf_iterator<char>());
    for (const m::Spec* spec : m::kAllSpecs) {
        EXPECT_NE(text.find("`" + std::string(spec->name) + "`"), std::string::npos)
            << spec->name << " is not listed in docs/observability.md";
    }
}
