// Observability end to end (label e2e), with the real binary and Debian's real Prometheus:
// - `eventlog serve` counts requests by route template and status on its own /metrics, which promtool accepts;
// - Prometheus, configured from deploy/prometheus/ (intervals and windows shortened), scrapes a relay and an API
//   server; a metric of each is read back through its HTTP query API; with ClickHouse frozen (SIGSTOP) while events
//   wait, the stall alert fires, and after SIGCONT it resolves and every event is in ClickHouse once.
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "e2e_support.hpp"
#include "support/http_client.hpp"
#include "support/http_listener.hpp"
#include "support/run_command.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSecret = "e2e-observability-secret-7d1f0c9e4b2a86f35e0d7c1b9a4f2e6d8c3b5a7f9e1d0c2b4a6f8e";

/// `text` percent-encoded for a URL query value.
std::string UrlEncode(const std::string& text) {
    std::string out;
    for (const unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out += fmt::format("%{:02X}", c);
        }
    }
    return out;
}

/// Every `"event_id":"…"` of an API answer, in order.
std::vector<std::string> EventIds(const std::string& body) {
    static const std::regex kId(R"re("event_id":"([0-9a-f-]{36})")re");
    std::vector<std::string> ids;
    for (auto it = std::sregex_iterator(body.begin(), body.end(), kId); it != std::sregex_iterator(); ++it) {
        ids.push_back((*it)[1]);
    }
    return ids;
}

/// `text` with every `from` replaced by `to`; `count` receives the number of replacements.
std::string ReplaceAll(std::string text, const std::string& from, const std::string& to, int* count = nullptr) {
    int n = 0;
    for (auto pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
        text.replace(pos, from.size(), to);
        ++n;
    }
    if (count != nullptr) *count = n;
    return text;
}

void WriteFile(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

/// Checks with Python's json module that every line of the log at `path` is one JSON object with timestamp, level
/// and event. The relay's closing summary ("delivered N events in M batches, ...") is its command output on stdout,
/// which the test harness writes into the same file, and is the one line skipped.
void ExpectEveryLineIsJson(const std::string& path, std::size_t min_lines) {
    static const char* kCheck =
        "import json, re, sys\n"
        "lines = bad = 0\n"
        "for raw in open(sys.argv[1], encoding='utf-8'):\n"
        "    line = raw.rstrip('\\n')\n"
        "    if re.fullmatch(r'delivered \\d+ events in \\d+ batches, .*', line): continue\n"
        "    lines += 1\n"
        "    try:\n"
        "        o = json.loads(line)\n"
        "        assert isinstance(o, dict) and {'timestamp', 'level', 'event'} <= o.keys()\n"
        "    except Exception as e:\n"
        "        bad += 1\n"
        "        print('not a JSON log line:', repr(line[:300]), e)\n"
        "print('lines', lines, 'bad', bad)\n";
    const auto r =
        testing::RunCommand("/usr/bin/python3 -c " + testing::ShellQuote(kCheck) + " " + testing::ShellQuote(path));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    static const std::regex kSummary(R"(lines (\d+) bad (\d+))");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.output, m, kSummary)) << r.output;
    EXPECT_EQ(m[2], "0") << path << ":\n" << r.output;
    EXPECT_GE(std::stoul(m[1]), min_lines) << path;
}

class ObservabilityE2e : public E2eTest {
protected:
    /// Creates an API key through the CLI and returns its token.
    std::string CreateKey() {
        const auto created = world_->Eventlog({"apikey", "create", "--name", "obs"},
                                              {{"SECRET_KEY", kSecret}, {"DATABASE_URL", world_->Dsn()}}, 30s);
        EXPECT_TRUE(created.Ok()) << created.output;
        const auto lines = SplitLines(created.output);
        return lines.empty() ? std::string() : lines.back();
    }

    /// Starts `eventlog serve` (as the producer role) on a free port; waits until it listens.
    Child StartServe(const std::map<std::string, std::string>& extra = {}) {
        api_port_ = FreeLoopbackPort();
        serve_log_ = world_->LogDir() + "/serve.log";
        auto env = extra;
        env["SECRET_KEY"] = kSecret;
        env["DATABASE_URL"] = world_->ProducerDsn();
        Child child =
            Child::Spawn("serve", {EVENTLOG_BINARY, "serve", "--listen", "127.0.0.1:" + std::to_string(api_port_)},
                         world_->ChildEnv(env), serve_log_);
        EXPECT_TRUE(WaitFor([&] { return CountInFile(serve_log_, "http_listening") > 0 || !child.Running(); }, 30s));
        return child;
    }

    testing::HttpAnswer PostEvents(const std::string& token, int n) {
        std::string body = "[";
        for (int i = 0; i < n; ++i) {
            body += fmt::format(R"({}{{"event_type":"obs_e2e","event_context":{{"n":{}}}}})", i ? "," : "", i);
        }
        body += "]";
        return testing::HttpRequest(api_port_, "POST", "/api/v1/events", body,
                                    {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}});
    }

    std::uint16_t api_port_{0};
    std::string serve_log_;
};

TEST_F(ObservabilityE2e, TheApiServersMetricsCountRequestsByRouteTemplateAndPassPromtool) {
    const std::string token = CreateKey();
    Child serve = StartServe();
    ASSERT_TRUE(serve.Running()) << ReadFile(serve_log_);

    const auto posted = PostEvents(token, 3);
    ASSERT_EQ(posted.status, 202) << posted.body;
    const auto ids = EventIds(posted.body);
    ASSERT_EQ(ids.size(), 3u) << posted.body;
    const auto auth = std::vector<std::pair<std::string, std::string>>{{"Authorization", "Bearer " + token}};
    EXPECT_EQ(testing::HttpRequest(api_port_, "GET", "/api/v1/events/" + ids[0], {}, auth).status, 200);
    EXPECT_EQ(testing::HttpRequest(api_port_, "GET", "/api/v1/events/" + ids[1], {}, auth).status, 200);
    EXPECT_EQ(testing::HttpRequest(api_port_, "GET", "/no/such/path/" + ids[2]).status, 404);
    EXPECT_EQ(testing::HttpRequest(api_port_, "POST", "/healthz").status, 405);
    EXPECT_EQ(PostEvents("elk_wrong", 1).status, 401);

    const auto metrics = testing::HttpRequest(api_port_, "GET", "/metrics");
    ASSERT_EQ(metrics.status, 200);
    EXPECT_EQ(metrics.headers.at("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const std::string& text = metrics.body;
    // Route templates, never paths: two lookups of different ids are one series.
    EXPECT_NE(text.find(R"(eventlog_http_requests_total{route="/api/v1/events",status="202"} 1)"), std::string::npos)
        << text;
    EXPECT_NE(text.find(R"(eventlog_http_requests_total{route="/api/v1/events",status="401"} 1)"), std::string::npos)
        << text;
    EXPECT_NE(text.find(R"(eventlog_http_requests_total{route="/api/v1/events/{event_id}",status="200"} 2)"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find(R"(eventlog_http_requests_total{route="unmatched",status="404"} 1)"), std::string::npos)
        << text;
    EXPECT_NE(text.find(R"(eventlog_http_requests_total{route="/healthz",status="405"} 1)"), std::string::npos) << text;
    for (const auto& id : ids) EXPECT_EQ(text.find(id), std::string::npos) << "an event id is in /metrics";
    EXPECT_EQ(text.find("/no/such/path"), std::string::npos) << "a raw path is in /metrics";
    EXPECT_EQ(text.find(token.substr(4)), std::string::npos);
    EXPECT_EQ(text.find(kSecret), std::string::npos);
    // Six requests answered before this scrape (the scrape is counted once its body is rendered).
    EXPECT_NE(text.find("eventlog_http_request_duration_seconds_count 6\n"), std::string::npos) << text;
    EXPECT_NE(text.find("eventlog_pg_pool_connections{state=\"in_use\"} 0\n"), std::string::npos) << text;
    static const std::regex kIdle(R"re(eventlog_pg_pool_connections\{state="idle"\} ([1-9][0-9]*)\n)re");
    EXPECT_TRUE(std::regex_search(text, kIdle)) << "the requests above left at least one idle session\n" << text;
    EXPECT_NE(text.find("eventlog_build_info{version=\""), std::string::npos) << text;

    const auto check = testing::RunCommand("promtool check metrics", text);
    EXPECT_EQ(check.exit_code, 0) << check.output << "\n" << text;
    EXPECT_EQ(check.output, "") << "promtool reported findings";

    const auto again = testing::HttpRequest(api_port_, "GET", "/metrics");
    EXPECT_NE(again.body.find(R"(eventlog_http_requests_total{route="/metrics",status="200"} 1)"), std::string::npos)
        << again.body;
    serve.Signal(SIGTERM);
    const auto serve_status = serve.Wait(30s);
    ASSERT_TRUE(serve_status.has_value()) << "the API server did not stop";
    EXPECT_TRUE(WIFEXITED(*serve_status) && WEXITSTATUS(*serve_status) == 0) << DescribeStatus(*serve_status);
    ASSERT_NO_FATAL_FAILURE(ExpectEveryLineIsJson(serve_log_, 3));
}

/// Debian's prometheus on a loopback port with its data in the test's log folder, scraping every second.
class Prometheus {
public:
    /// Writes deploy/prometheus/'s config and rules with short intervals and windows into `dir` and starts it.
    void Start(const std::string& dir, std::uint16_t relay_port, std::uint16_t api_port) {
        const std::string deploy = std::string(EVENTLOG_SOURCE_DIR) + "/deploy/prometheus";
        int n = 0;
        std::string config = ReadFile(deploy + "/prometheus.yml");
        config = ReplaceAll(config, "_interval: 15s", "_interval: 1s", &n);
        ASSERT_EQ(n, 2) << "deploy/prometheus/prometheus.yml: expected scrape and evaluation intervals of 15s";
        config = ReplaceAll(config, "[\"127.0.0.1:9464\"]", "[\"127.0.0.1:" + std::to_string(relay_port) + "\"]", &n);
        ASSERT_EQ(n, 1);
        config = ReplaceAll(config, "[\"127.0.0.1:8000\"]", "[\"127.0.0.1:" + std::to_string(api_port) + "\"]", &n);
        ASSERT_EQ(n, 1);
        // Minutes become seconds: the stall alert's 10 minutes without a delivery become 5 s, its `for` 2 s.
        std::string rules = ReadFile(deploy + "/eventlog.rules.yml");
        rules = ReplaceAll(rules, "[10m]", "[5s]", &n);
        ASSERT_GE(n, 1) << "the stall alert's window is no longer [10m]: update this test";
        rules = ReplaceAll(rules, "[5m]", "[5s]");
        rules = std::regex_replace(rules, std::regex("for: [0-9]+m"), "for: 2s");
        ::mkdir(dir.c_str(), 0700);
        WriteFile(dir + "/prometheus.yml", config);
        WriteFile(dir + "/eventlog.rules.yml", rules);
        port_ = FreeLoopbackPort();
        log_ = dir + "/prometheus.log";
        child_ = Child::Spawn(
            "prometheus",
            {"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml", "--storage.tsdb.path=" + dir + "/data",
             "--web.listen-address=127.0.0.1:" + std::to_string(port_), "--log.level=warn"},
            CleanEnvironment(), log_);
        ASSERT_TRUE(WaitFor([&] { return Get("/-/ready").status == 200 || !child_.Running(); }, 30s, 100ms))
            << Tail(ReadFile(log_), 3000);
        ASSERT_TRUE(child_.Running()) << Tail(ReadFile(log_), 3000);
    }

    testing::HttpAnswer Get(const std::string& target) const {
        try {
            return testing::HttpRequest(port_, "GET", target);
        } catch (const std::exception&) {
            return {};
        }
    }

    /// The values of an instant query's result series (strings as Prometheus gives them); empty when none.
    std::vector<std::string> Query(const std::string& promql) const {
        const auto answer = Get("/api/v1/query?query=" + UrlEncode(promql));
        static const std::regex kValue(R"re("value":\[[0-9.e+]+,"([^"]*)"\])re");
        std::vector<std::string> values;
        for (auto it = std::sregex_iterator(answer.body.begin(), answer.body.end(), kValue);
             it != std::sregex_iterator(); ++it) {
            values.push_back((*it)[1]);
        }
        return values;
    }

    /// True when the query gives exactly one series with value `value`.
    bool QueryIs(const std::string& promql, const std::string& value) const {
        const auto values = Query(promql);
        return values.size() == 1 && values[0] == value;
    }

    std::string LogTail() const { return Tail(ReadFile(log_), 3000); }
    void Stop() {
        child_.Signal(SIGTERM);
        child_.Wait(20s);
    }

private:
    Child child_;
    std::uint16_t port_{0};
    std::string log_;
};

TEST_F(ObservabilityE2e, RealPrometheusScrapesRelayAndApiAndTheStallAlertFiresWhileClickHouseIsFrozen) {
    auto& w = *world_;
    const std::string token = CreateKey();
    const std::uint16_t relay_port = FreeLoopbackPort();
    Child& relay = w.StartRelay(
        {{"METRICS_LISTEN", "127.0.0.1:" + std::to_string(relay_port)}, {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "1"}});
    ASSERT_TRUE(w.WaitForLogLine(relay, "metrics_listening", 30s)) << Tail(ReadFile(relay.LogPath()), 3000);
    Child serve = StartServe();
    ASSERT_TRUE(serve.Running()) << ReadFile(serve_log_);
    Prometheus prometheus;
    ASSERT_NO_FATAL_FAILURE(prometheus.Start(w.LogDir() + "/prometheus", relay_port, api_port_));

    // Delivered through the API; Prometheus reads the relay's counter and the API server's request counter.
    auto posted = PostEvents(token, 20);
    ASSERT_EQ(posted.status, 202) << posted.body;
    auto ids = EventIds(posted.body);
    ASSERT_TRUE(WaitFor([&] { return w.ChRows() == 20; }, 30s, 50ms));
    EXPECT_TRUE(WaitFor([&] { return prometheus.QueryIs(R"(up{job="eventlog-relay"})", "1"); }, 20s, 200ms));
    EXPECT_TRUE(WaitFor([&] { return prometheus.QueryIs(R"(up{job="eventlog-api"})", "1"); }, 20s, 200ms));
    EXPECT_TRUE(WaitFor(
        [&] { return prometheus.QueryIs(R"(eventlog_relay_delivered_events_total{job="eventlog-relay"})", "20"); }, 20s,
        200ms))
        << "delivered: " << ::testing::PrintToString(prometheus.Query("eventlog_relay_delivered_events_total"));
    EXPECT_TRUE(WaitFor(
        [&] {
            return prometheus.QueryIs(
                R"(eventlog_http_requests_total{job="eventlog-api",route="/api/v1/events",status="202"})", "1");
        },
        20s, 200ms))
        << ::testing::PrintToString(prometheus.Query("eventlog_http_requests_total"));
    const std::string firing = R"(ALERTS{alertname="EventlogDeliveryStalled",alertstate="firing"})";
    EXPECT_TRUE(prometheus.Query(firing).empty()) << "the stall alert fires while everything is delivered";

    // ClickHouse frozen with events waiting: the stall alert fires (5 s without a delivery, then 2 s).
    const pid_t clickhouse = w.ClickHousePid();
    ASSERT_GT(clickhouse, 0);
    const struct Thaw {
        pid_t pid;
        ~Thaw() { ::kill(pid, SIGCONT); }
    } thaw{clickhouse};
    const auto frozen_at = Clock::now();
    ASSERT_EQ(::kill(clickhouse, SIGSTOP), 0);
    w.Note("clickhouse SIGSTOP");
    posted = PostEvents(token, 50);
    ASSERT_EQ(posted.status, 202) << posted.body;
    const auto more = EventIds(posted.body);
    ids.insert(ids.end(), more.begin(), more.end());
    const bool fired = WaitFor([&] { return prometheus.QueryIs(firing, "1"); }, 30s, 250ms);
    const double fired_after = SecondsSince(frozen_at);
    EXPECT_TRUE(fired) << "pending+in flight: "
                       << ::testing::PrintToString(prometheus.Query(
                              "max(eventlog_outbox_pending_events) + max(eventlog_outbox_in_flight_events)"))
                       << " delivered in 5 s: "
                       << ::testing::PrintToString(
                              prometheus.Query("sum(increase(eventlog_relay_delivered_events_total[5s]))"))
                       << "\n"
                       << prometheus.LogTail();
    std::printf("[ e2e      ] stall alert firing %.1f s after SIGSTOP\n", fired_after);

    // Thawed: everything arrives once and the alert resolves by itself.
    ::kill(clickhouse, SIGCONT);
    w.Note("clickhouse SIGCONT");
    EXPECT_TRUE(WaitFor([&] { return w.ChRows() == 70; }, 60s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);
    EXPECT_TRUE(WaitFor([&] { return prometheus.Query(firing).empty(); }, 20s, 250ms))
        << "the stall alert still fires after delivery resumed";
    // The backlog as Prometheus sees it is empty again. (The delivered counter is not compared: an insert that timed
    // out may have landed, and recovery then finds its rows present and counts nothing.)
    const std::string backlog = "max(eventlog_outbox_pending_events) + max(eventlog_outbox_in_flight_events)";
    EXPECT_TRUE(WaitFor([&] { return prometheus.QueryIs(backlog, "0"); }, 20s, 200ms))
        << ::testing::PrintToString(prometheus.Query(backlog));

    prometheus.Stop();
    serve.Signal(SIGTERM);
    const auto serve_status = serve.Wait(30s);
    ASSERT_TRUE(serve_status.has_value()) << "the API server did not stop";
    EXPECT_TRUE(WIFEXITED(*serve_status) && WEXITSTATUS(*serve_status) == 0) << DescribeStatus(*serve_status);
    relay.Signal(SIGTERM);
    const auto relay_status = relay.Wait(60s);
    ASSERT_TRUE(relay_status.has_value()) << "the relay did not stop";
    EXPECT_TRUE(WIFEXITED(*relay_status) && WEXITSTATUS(*relay_status) == 0) << DescribeStatus(*relay_status) << "\n"
                                                                             << Tail(ReadFile(relay.LogPath()), 3000);
    w.VerifyExactlyOnce([&] {
        ProducedEvents p;
        p.committed = ids;
        return p;
    }());
    // Every line the relay and the API server wrote, through a freeze, retries and a recovery, is a JSON object.
    ASSERT_NO_FATAL_FAILURE(ExpectEveryLineIsJson(relay.LogPath(), 10));
    ASSERT_NO_FATAL_FAILURE(ExpectEveryLineIsJson(serve_log_, 3));
}

TEST_F(ObservabilityE2e, LogFormatIsReadFromTheDotenvFileToo) {
    auto& w = *world_;
    w.EmitCommitted(5);
    // LOG_FORMAT only in the .env file (the connection settings come from the environment, which wins).
    const std::string env_file = w.LogDir() + "/console.env";
    WriteFile(env_file, "LOG_FORMAT=console\n");
    ::chmod(env_file.c_str(), 0600);
    const auto console = w.Eventlog({"relay", "--drain"}, {{"EVENTLOG_ENV_FILE", env_file}}, 60s);
    ASSERT_TRUE(console.Ok()) << console.output;
    static const std::regex kConsoleLine(R"(^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z +[A-Z]+ +relay_starting( |$))");
    bool found = false;
    for (const auto& line : SplitLines(console.output)) {
        EXPECT_NE(line.front(), '{') << "a JSON line although .env says LOG_FORMAT=console: " << line;
        found = found || std::regex_search(line, kConsoleLine);
    }
    EXPECT_TRUE(found) << console.output;
    EXPECT_EQ(w.ChRows(), 5);

    // An unknown format in .env stops start-up with exit code 2, naming the variable.
    WriteFile(env_file, "LOG_FORMAT=xml\n");
    const auto refused = w.Eventlog({"relay", "--drain"}, {{"EVENTLOG_ENV_FILE", env_file}}, 60s);
    EXPECT_TRUE(WIFEXITED(refused.status) && WEXITSTATUS(refused.status) == 2) << DescribeStatus(refused.status);
    EXPECT_NE(refused.output.find("LOG_FORMAT"), std::string::npos) << refused.output;
}

/// What Sentry's Python SDK (tests/protocol/sentry_check.py) reads from each envelope `sentry` received, one
/// `path=json` line per field; an envelope it cannot parse fails the test.
std::vector<std::string> ParsedEnvelopes(const testing::HttpListener& sentry, const std::string& dir) {
    std::vector<std::string> out;
    int i = 0;
    for (const auto& request : sentry.Requests()) {
        const std::string path = fmt::format("{}/envelope-{}.txt", dir, ++i);
        WriteFile(path, request.body);
        const auto r = testing::RunCommand(
            "/usr/bin/python3 " +
            testing::ShellQuote(std::string(EVENTLOG_SOURCE_DIR) + "/tests/protocol/sentry_check.py") + " " +
            testing::ShellQuote(path));
        EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- envelope ---\n" << request.body;
        out.push_back(r.output);
    }
    return out;
}

/// The parsed envelopes whose event message starts with `what`.
std::vector<std::string> EventsAbout(const std::vector<std::string>& parsed, const std::string& what) {
    std::vector<std::string> out;
    for (const auto& p : parsed) {
        if (p.find("event.message.formatted=\"" + what) != std::string::npos) out.push_back(p);
    }
    return out;
}

bool Has(const std::string& parsed, const std::string& line) { return parsed.find(line + "\n") != std::string::npos; }

TEST_F(ObservabilityE2e, SentryGetsTheRelaysStallDeadLetterPauseAndFailedBatchAndTheApisFailedRequest) {
    auto& w = *world_;
    testing::HttpListener sentry;
    const std::string key = "e2epublickey0123456789abcdef";
    const std::string dsn = fmt::format("http://{}@127.0.0.1:{}/42", key, sentry.Port());
    const std::string envelopes = w.LogDir() + "/envelopes";
    ::mkdir(envelopes.c_str(), 0700);
    ::mkdir((envelopes + "/api").c_str(), 0700);
    const auto parsed = [&] { return ParsedEnvelopes(sentry, envelopes); };
    const auto wait_for = [&](const std::string& what, std::chrono::milliseconds timeout) {
        return WaitFor([&] { return !EventsAbout(parsed(), what).empty(); }, timeout, 250ms);
    };
    // A column that makes ClickHouse refuse poison_event rows (added first: a relay running during the ALTER would
    // meet its stage out of date and pause once).
    auto ch = OpenCh(w.Srv().ch_url, w.Name(), 30s);
    ch.Execute("ALTER TABLE " + w.Table() +
               " ADD COLUMN poison_check UInt8 MATERIALIZED throwIf(event_type = 'poison_event')");
    const std::uint16_t metrics_port = FreeLoopbackPort();
    Child& relay = w.StartRelay({{"SENTRY_CONFIG_DSN", dsn},
                                 {"SENTRY_CONFIG_ENVIRONMENT", "e2e"},
                                 {"METRICS_LISTEN", "127.0.0.1:" + std::to_string(metrics_port)},
                                 {"RELAY_STALL_SECONDS", "2"},
                                 {"RELAY_MAX_ATTEMPTS", "2"},
                                 {"RELAY_BACKOFF_CAP_MS", "500"},
                                 {"CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "1"}});
    ASSERT_TRUE(w.WaitForLogLine(relay, "relay_connected", 30s)) << Tail(ReadFile(relay.LogPath()), 3000);

    // A dead letter: ClickHouse refuses one row of ten.
    auto ids = w.EmitCommitted(10, 3);
    const std::string poison = ids[2];
    ASSERT_TRUE(WaitFor([&] { return w.ChRows() == 9; }, 30s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);
    EXPECT_TRUE(wait_for("event_dead_lettered", 10s)) << sentry.Requests().size() << " envelopes";
    EXPECT_TRUE(EventsAbout(parsed(), "batch_failed").empty()) << "a dead letter was also reported as a failed batch";

    // ClickHouse frozen with events waiting: a stall, and the delivery loop failing RELAY_MAX_ATTEMPTS (2) times.
    {
        const pid_t clickhouse = w.ClickHousePid();
        ASSERT_GT(clickhouse, 0);
        const struct Thaw {
            pid_t pid;
            ~Thaw() { ::kill(pid, SIGCONT); }
        } thaw{clickhouse};
        ::kill(clickhouse, SIGSTOP);
        w.Note("clickhouse SIGSTOP");
        const auto more = w.EmitCommitted(20);
        ids.insert(ids.end(), more.begin(), more.end());
        EXPECT_TRUE(wait_for("relay_stalled", 20s)) << Tail(ReadFile(relay.LogPath()), 3000);
        EXPECT_TRUE(wait_for("batch_failed", 20s)) << Tail(ReadFile(relay.LogPath()), 3000);
    }
    w.Note("clickhouse SIGCONT");
    ASSERT_TRUE(WaitFor([&] { return w.ChRows() == 29; }, 60s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);

    // The target table missing: delivery pauses (a configuration error), loudly, and resumes once it is back.
    const std::string moved = fmt::format("`{}`.`event_log_moved`", w.Name());
    ch.Execute("RENAME TABLE " + w.Table() + " TO " + moved);
    const auto paused_from = w.MarkLogs();
    const auto last = w.EmitCommitted(5);
    ids.insert(ids.end(), last.begin(), last.end());
    EXPECT_TRUE(wait_for("delivery_paused", 30s)) << Tail(ReadFile(relay.LogPath()), 3000);
    // Repeats are rate-limited: the pause goes on (logged again at every retry), Sentry hears of it once.
    EXPECT_TRUE(
        WaitFor([&] { return Select(w.RelayLogLines(paused_from), "delivery_paused").size() >= 3; }, 30s, 100ms));
    ch.Execute("RENAME TABLE " + moved + " TO " + w.Table());
    EXPECT_TRUE(WaitFor([&] { return w.ChRows() == 34; }, 60s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);

    // The API server: a request that fails with a 500 (its role lost a grant it needs) is reported with its route.
    // Its own listener: the test listener serves one connection at a time, and the relay keeps its one open.
    testing::HttpListener api_sentry;
    const std::string api_dsn = fmt::format("http://{}@127.0.0.1:{}/42", key, api_sentry.Port());
    const std::string token = CreateKey();
    Child serve = StartServe({{"SENTRY_CONFIG_DSN", api_dsn}, {"SENTRY_CONFIG_ENVIRONMENT", "e2e"}});
    ASSERT_TRUE(serve.Running()) << ReadFile(serve_log_);
    auto admin = OpenPg(w.Dsn());
    admin.Exec("REVOKE USAGE ON SCHEMA eventlog FROM eventlog_producer");
    const auto failed = PostEvents(token, 1);
    admin.Exec("GRANT USAGE ON SCHEMA eventlog TO eventlog_producer");
    EXPECT_EQ(failed.status, 500) << failed.body;
    ASSERT_TRUE(api_sentry.WaitForRequests(1, 10s)) << ReadFile(serve_log_);
    const auto accepted = PostEvents(token, 1);
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    for (const auto& id : EventIds(accepted.body)) ids.push_back(id);

    auto all = parsed();
    const auto api_parsed = ParsedEnvelopes(api_sentry, envelopes + "/api");
    const auto request = EventsAbout(api_parsed, "http_request_failed");
    EXPECT_TRUE(EventsAbout(all, "http_request_failed").empty());
    all.insert(all.end(), api_parsed.begin(), api_parsed.end());
    const auto dead = EventsAbout(all, "event_dead_lettered");
    const auto stalled = EventsAbout(all, "relay_stalled");
    const auto batch = EventsAbout(all, "batch_failed");
    const auto paused = EventsAbout(all, "delivery_paused");
    EXPECT_EQ(dead.size(), 1u);
    EXPECT_EQ(stalled.size(), 1u);
    EXPECT_EQ(paused.size(), 1u) << "repeats of one fingerprint within a minute must be dropped";
    ASSERT_FALSE(batch.empty());
    ASSERT_EQ(request.size(), 1u);
    if (!dead.empty()) {
        EXPECT_TRUE(Has(dead[0], R"(event.tags.error.source="clickhouse")")) << dead[0];
        EXPECT_TRUE(Has(dead[0], R"(event.fingerprint[0]="event_dead_lettered")")) << dead[0];
        EXPECT_NE(dead[0].find("FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"), std::string::npos)
            << "ClickHouse's reason is sent\n"
            << dead[0];
    }
    if (!stalled.empty()) {
        EXPECT_TRUE(Has(stalled[0], R"(event.level="error")")) << stalled[0];
    }
    // A request that timed out has no server code: its source is eventlog's client.
    EXPECT_TRUE(Has(batch[0], R"(event.tags.error.kind="in_doubt")") ||
                Has(batch[0], R"(event.tags.error.kind="transient")"))
        << batch[0];
    if (!paused.empty()) {
        EXPECT_TRUE(Has(paused[0], R"(event.tags.error.kind="configuration")")) << paused[0];
        EXPECT_TRUE(Has(paused[0], R"(event.fingerprint[0]="delivery_paused")")) << paused[0];
    }
    EXPECT_TRUE(Has(request[0], R"(event.tags.http.route="/api/v1/events")")) << request[0];
    EXPECT_TRUE(Has(request[0], R"(event.tags.error.code="42501")")) << request[0];
    for (const auto& p : all) {
        EXPECT_TRUE(Has(p, R"(event.environment="e2e")")) << p;
        EXPECT_TRUE(Has(p, R"(event.platform="native")")) << p;
    }
    auto requests = sentry.Requests();
    for (const auto& r : api_sentry.Requests()) requests.push_back(r);
    for (const auto& r : requests) {
        EXPECT_EQ(r.path, "/api/42/envelope/");
        EXPECT_NE(r.headers.at("x-sentry-auth").find("sentry_key=" + key), std::string::npos);
    }
    // The DSN's key is in no log line.
    EXPECT_EQ(ReadFile(relay.LogPath()).find(key), std::string::npos);
    EXPECT_EQ(ReadFile(serve_log_).find(key), std::string::npos);
    const auto metrics = testing::HttpRequest(metrics_port, "GET", "/metrics").body;
    static const std::regex kSent(R"(eventlog_sentry_sent_events_total ([0-9]+))");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(metrics, m, kSent)) << metrics;
    EXPECT_GE(std::stoi(m[1]), 4) << metrics;

    serve.Signal(SIGTERM);
    const auto serve_status = serve.Wait(30s);
    ASSERT_TRUE(serve_status.has_value()) << "the API server did not stop";
    EXPECT_TRUE(WIFEXITED(*serve_status) && WEXITSTATUS(*serve_status) == 0) << DescribeStatus(*serve_status);
    relay.Signal(SIGTERM);
    const auto relay_status = relay.Wait(60s);
    ASSERT_TRUE(relay_status.has_value()) << "the relay did not stop";
    EXPECT_TRUE(WIFEXITED(*relay_status) && WEXITSTATUS(*relay_status) == 0) << DescribeStatus(*relay_status) << "\n"
                                                                             << Tail(ReadFile(relay.LogPath()), 3000);
    w.VerifyExactlyOnce(
        [&] {
            ProducedEvents p;
            p.committed = ids;
            return p;
        }(),
        {poison});
}

/// The summary lines tests/protocol/otlp_check.js prints for each request `collector` received (the OpenTelemetry
/// proto definitions' round trip); a request it refuses fails the test.
std::vector<std::string> CheckedSpans(const testing::HttpListener& collector, const std::string& dir) {
    std::vector<std::string> lines;
    int i = 0;
    const std::string protocol = std::string(EVENTLOG_SOURCE_DIR) + "/tests/protocol";
    for (const auto& request : collector.Requests()) {
        EXPECT_EQ(request.path, "/v1/traces");
        EXPECT_EQ(request.headers.count("content-type") ? request.headers.at("content-type") : "", "application/json");
        const std::string path = fmt::format("{}/otlp-{}.json", dir, ++i);
        WriteFile(path, request.body);
        const auto r = testing::RunCommand("cd " + testing::ShellQuote(protocol) + " && node otlp_check.js " +
                                           testing::ShellQuote(path));
        EXPECT_EQ(r.exit_code, 0) << r.output << "\n--- request ---\n" << request.body;
        for (const auto& line : SplitLines(r.output)) lines.push_back(line);
    }
    return lines;
}

/// The "span ..." lines of `lines` that contain every one of `parts`.
std::vector<std::string> SpansWith(const std::vector<std::string>& lines, const std::vector<std::string>& parts) {
    std::vector<std::string> out;
    for (const auto& line : lines) {
        if (line.rfind("span ", 0) != 0) continue;
        bool all = true;
        for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
        if (all) out.push_back(line);
    }
    return out;
}

TEST_F(ObservabilityE2e, ATraceparentSentToTheApiComesBackAsTheEventsTraceIdInClickHouseAndSpansAreExported) {
    auto& w = *world_;
    testing::HttpListener api_collector;
    testing::HttpListener relay_collector;
    const std::string spans_dir = w.LogDir() + "/otlp";  // the requests as received, for a failure's investigation
    const std::string api_dir = spans_dir + "/api";
    const std::string relay_dir = spans_dir + "/relay";
    for (const auto& d : {spans_dir, api_dir, relay_dir}) ::mkdir(d.c_str(), 0700);
    Child& relay = w.StartRelay({{"OTEL_EXPORTER_OTLP_ENDPOINT", relay_collector.Url()}, {"METRICS_LISTEN", "off"}});
    ASSERT_TRUE(w.WaitForLogLine(relay, "relay_connected", 30s)) << Tail(ReadFile(relay.LogPath()), 3000);
    const std::string token = CreateKey();
    Child serve = StartServe({{"OTEL_EXPORTER_OTLP_ENDPOINT", api_collector.Url()}});
    ASSERT_TRUE(serve.Running()) << ReadFile(serve_log_);

    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const std::string parent = "00f067aa0ba902b7";
    const auto post = [&](const std::string& body, const std::string& traceparent) {
        std::vector<std::pair<std::string, std::string>> headers{{"Content-Type", "application/json"},
                                                                 {"Authorization", "Bearer " + token}};
        if (!traceparent.empty()) headers.emplace_back("traceparent", traceparent);
        const auto answer = testing::HttpRequest(api_port_, "POST", "/api/v1/events", body, headers);
        EXPECT_EQ(answer.status, 202) << answer.body;
        const auto ids = EventIds(answer.body);
        return ids.empty() ? std::string() : ids.front();
    };
    const std::string plain = R"({"event_type":"traced","event_context":{}})";
    const std::string continued = post(plain, "00-" + trace + "-" + parent + "-01");
    const std::string own = post(R"({"event_type":"traced","event_context":{},"trace_id":"client-chosen"})",
                                 "00-" + trace + "-" + parent + "-01");
    const std::string fresh = post(plain, "");
    const std::string malformed = post(plain, "00-" + trace + "-" + parent);  // no flags: ignored
    const std::string unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    const std::string unsampled = post(plain, "00-" + unsampled_trace + "-b7ad6b7169203331-00");
    ASSERT_TRUE(WaitFor([&] { return w.ChRows() == 5; }, 30s, 100ms)) << Tail(ReadFile(relay.LogPath()), 3000);

    auto ch = OpenCh(w.Srv().ch_url, w.Name(), 30s);
    std::map<std::string, std::string> trace_of;
    for (const auto& line :
         SplitLines(ch.Query("SELECT toString(event_id), trace_id FROM " + w.Table() + " FORMAT TabSeparated"))) {
        const auto tab = line.find('\t');
        trace_of[line.substr(0, tab)] = tab == std::string::npos ? "" : line.substr(tab + 1);
    }
    EXPECT_EQ(trace_of[continued], trace) << "the traceparent's trace id is the event's trace_id";
    EXPECT_EQ(trace_of[own], "client-chosen") << "a trace_id the client gives wins";
    EXPECT_EQ(trace_of[unsampled], unsampled_trace) << "an unsampled trace is still the event's trace";
    static const std::regex kHex32("[0-9a-f]{32}");
    for (const auto& id : {fresh, malformed}) {
        EXPECT_TRUE(std::regex_match(trace_of[id], kHex32)) << trace_of[id];
        EXPECT_NE(trace_of[id], trace);
    }
    EXPECT_NE(trace_of[fresh], trace_of[malformed]);

    // One access line per request, inside its context: the continued trace, method, path, route, status, duration.
    int access_lines = 0;
    for (const auto& line : SplitLines(ReadFile(serve_log_))) {
        if (line.find(R"("event":"http_request")") == std::string::npos) continue;
        ++access_lines;
        if (line.find(R"("trace_id":")" + trace + "\"") == std::string::npos) continue;
        EXPECT_NE(line.find(R"("method":"POST","path":"/api/v1/events")"), std::string::npos) << line;
        EXPECT_NE(line.find(R"("route":"/api/v1/events","status":202,"duration_ms":)"), std::string::npos) << line;
    }
    EXPECT_GE(access_lines, 5) << ReadFile(serve_log_);

    // The API's request spans (sent within the 2 s batch delay) pass the OpenTelemetry proto round trip.
    ASSERT_TRUE(
        WaitFor([&] { return SpansWith(CheckedSpans(api_collector, api_dir), {"span "}).size() >= 4; }, 15s, 250ms))
        << ReadFile(serve_log_);
    const auto api_spans = CheckedSpans(api_collector, api_dir);
    const auto child = SpansWith(api_spans, {"span " + trace + " ", "parent=" + parent + " "});
    ASSERT_EQ(child.size(), 2u) << ::testing::PrintToString(api_spans);
    for (const auto& line : child) {
        EXPECT_NE(line.find("name=POST /api/v1/events kind=2 "), std::string::npos) << line;
        EXPECT_NE(line.find(R"(http.route={"stringValue":"/api/v1/events"})"), std::string::npos) << line;
        EXPECT_NE(line.find("http.response.status_code={\"intValue\":\"202\"}"), std::string::npos) << line;
    }
    EXPECT_EQ(SpansWith(api_spans, {"span " + trace_of[fresh] + " ", "parent= "}).size(), 1u)
        << "a request without traceparent is the root of its own trace\n"
        << ::testing::PrintToString(api_spans);
    EXPECT_TRUE(SpansWith(api_spans, {unsampled_trace}).empty()) << "an unsampled trace was exported";
    for (const auto& id : {continued, own, fresh, malformed, unsampled}) {
        EXPECT_TRUE(SpansWith(api_spans, {id}).empty()) << "an event id in a span";
    }

    // The relay's claim spans: kind consumer, with the batch's size.
    ASSERT_TRUE(
        WaitFor([&] { return !SpansWith(CheckedSpans(relay_collector, relay_dir), {"kind=5"}).empty(); }, 15s, 250ms))
        << Tail(ReadFile(relay.LogPath()), 3000);
    const auto relay_spans =
        SpansWith(CheckedSpans(relay_collector, relay_dir), {"name=eventlog.relay deliver kind=5"});
    ASSERT_FALSE(relay_spans.empty());
    std::int64_t delivered = 0;
    static const std::regex kCount(R"re(messaging\.batch\.message_count=\{"intValue":"([0-9]+)"\})re");
    for (const auto& line : relay_spans) {
        std::smatch m;
        EXPECT_TRUE(std::regex_search(line, m, kCount)) << line;
        if (!m.empty()) delivered += std::stoll(m[1]);
    }
    EXPECT_EQ(delivered, 5);
    bool resource_named = false;
    for (const auto& line : CheckedSpans(relay_collector, relay_dir)) {
        resource_named =
            resource_named || (line.rfind("resource ", 0) == 0 &&
                               line.find(R"(service.name={"stringValue":"eventlog-relay"})") != std::string::npos);
    }
    EXPECT_TRUE(resource_named);

    // Span links from the relay's spans to the request spans that wrote the events: one per event that took its
    // request's trace (the event with its own trace_id has no producer span), each to the server's span in that
    // trace (not to the caller's parent), with its event count.
    const auto span_id_of = [](const std::string& line) { return line.substr(5 + 32 + 1, 16); };
    std::map<std::string, std::set<std::string>> api_span_ids;  // trace -> the API's span ids in it
    for (const auto& line : SpansWith(api_spans, {"span "})) api_span_ids[line.substr(5, 32)].insert(span_id_of(line));
    std::vector<std::string> links;
    for (const auto& line : CheckedSpans(relay_collector, relay_dir)) {
        if (line.rfind("link ", 0) == 0) links.push_back(line);
    }
    ASSERT_EQ(links.size(), 4u) << ::testing::PrintToString(links);
    for (const auto& id : {continued, fresh, malformed, unsampled}) {
        const std::string& t = trace_of[id];
        const auto in_trace = std::count_if(links.begin(), links.end(),
                                            [&](const std::string& l) { return l.rfind("link " + t + " ", 0) == 0; });
        EXPECT_EQ(in_trace, 1) << t << "\n" << ::testing::PrintToString(links);
        for (const auto& l : links) {
            if (l.rfind("link " + t + " ", 0) != 0) continue;
            const std::string span = span_id_of(l);
            EXPECT_NE(l.find(R"(messaging.batch.message_count={"intValue":"1"})"), std::string::npos) << l;
            if (t == unsampled_trace) {  // its request span was not exported: a child of the caller's span
                EXPECT_NE(span, "b7ad6b7169203331") << l;
            } else {
                EXPECT_EQ(api_span_ids[t].count(span), 1u) << l << "\n" << ::testing::PrintToString(api_spans);
            }
        }
    }

    serve.Signal(SIGTERM);
    const auto serve_status = serve.Wait(30s);
    ASSERT_TRUE(serve_status.has_value()) << "the API server did not stop";
    EXPECT_TRUE(WIFEXITED(*serve_status) && WEXITSTATUS(*serve_status) == 0) << DescribeStatus(*serve_status);
    relay.Signal(SIGTERM);
    const auto relay_status = relay.Wait(60s);
    ASSERT_TRUE(relay_status.has_value()) << "the relay did not stop";
    EXPECT_TRUE(WIFEXITED(*relay_status) && WEXITSTATUS(*relay_status) == 0) << DescribeStatus(*relay_status) << "\n"
                                                                             << Tail(ReadFile(relay.LogPath()), 3000);
    w.VerifyExactlyOnce([&] {
        ProducedEvents p;
        p.committed = {continued, own, fresh, malformed, unsampled};
        return p;
    }());
}

}  // namespace
}  // namespace eventlog::e2e
