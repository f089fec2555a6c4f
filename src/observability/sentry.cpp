#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <eventlog/core/error.hpp>
#include <eventlog/core/event.hpp>
#include <eventlog/core/json.hpp>
#include <eventlog/core/uuid.hpp>
#include <eventlog/observability/log.hpp>
#include <eventlog/observability/sentry.hpp>
#include <eventlog/observability/version.hpp>
#include <observability/detail/http_post.hpp>

namespace eventlog::sentry {
namespace {

/// How to write a DSN; part of every DSN error (which never shows the value: it holds the key).
constexpr std::string_view kDsnForm = "expected http(s)://PUBLIC_KEY@host[:port]/[path/]PROJECT_ID";

const char* LevelName(Level level) {
    switch (level) {
        case Level::kDebug:
            return "debug";
        case Level::kInfo:
            return "info";
        case Level::kWarning:
            return "warning";
        case Level::kError:
            return "error";
        case Level::kFatal:
            return "fatal";
    }
    return "error";
}

const char* SourceName(ErrorSource source) {
    switch (source) {
        case ErrorSource::kPostgres:
            return "postgresql";
        case ErrorSource::kClickHouse:
            return "clickhouse";
        case ErrorSource::kNone:
            return "eventlog";
    }
    return "eventlog";
}

std::string Rfc3339Now() {
    std::string ts = FormatTimestamp(NowMicros());
    ts[10] = 'T';
    return ts + "Z";
}

std::string NewEventId() {
    std::string id = Uuid::Random().ToString();
    id.erase(std::remove(id.begin(), id.end(), '-'), id.end());
    return id;
}

bool AllDigits(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> Fingerprint(const Report& report) {
    if (!report.fingerprint.empty()) return report.fingerprint;
    std::vector<std::string> fp = {report.exception_type.empty() ? report.message : report.exception_type};
    for (const auto& [k, v] : report.tags) {
        if (k == "error.source" || k == "error.code") fp.push_back(v);
    }
    return fp;
}

/// How long to stop sending after an answer: the longest X-Sentry-Rate-Limits group that covers errors
/// ("retry_after:categories:scope..." with no category, "error" or "default"); on a 429 without one,
/// Retry-After's seconds, else 60. nullopt: no limit applies.
std::optional<std::chrono::seconds> RetryAfter(long status, const std::string& rate_limits,
                                               const std::string& retry_after) {
    long best = -1;
    std::string_view rest = rate_limits;
    while (!rest.empty()) {
        const auto comma = rest.find(',');
        std::string_view group = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        while (!group.empty() && group.front() == ' ') group.remove_prefix(1);
        const auto colon = group.find(':');
        if (colon == std::string_view::npos) continue;
        long seconds = 0;
        const std::string_view number = group.substr(0, colon);
        const auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), seconds);
        if (ec != std::errc() || seconds < 0) continue;
        std::string_view categories = group.substr(colon + 1);
        categories = categories.substr(0, categories.find(':'));
        bool covers = categories.empty();
        while (!covers && !categories.empty()) {
            const auto semi = categories.find(';');
            const std::string_view c = categories.substr(0, semi);
            covers = c == "error" || c == "default";
            categories = semi == std::string_view::npos ? std::string_view{} : categories.substr(semi + 1);
        }
        if (covers) best = std::max(best, seconds);
    }
    if (best >= 0) return std::chrono::seconds(best);
    if (status != 429) return std::nullopt;
    long seconds = 0;
    const auto [p, ec] = std::from_chars(retry_after.data(), retry_after.data() + retry_after.size(), seconds);
    if (ec == std::errc() && p == retry_after.data() + retry_after.size() && seconds >= 0) {
        return std::chrono::seconds(seconds);
    }
    return std::chrono::seconds(60);
}

}  // namespace

std::optional<Dsn> Dsn::Parse(std::string_view text) {
    Dsn dsn;
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos) return std::nullopt;
    dsn.scheme = std::string(text.substr(0, scheme_end));
    if (dsn.scheme != "http" && dsn.scheme != "https") return std::nullopt;
    std::string_view rest = text.substr(scheme_end + 3);
    if (rest.find_first_of("?# \t\r\n") != std::string_view::npos) return std::nullopt;
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    const std::string_view authority = rest.substr(0, slash);
    const std::string_view path = rest.substr(slash);  // starts with '/'
    const auto at = authority.rfind('@');
    if (at == std::string_view::npos) return std::nullopt;
    std::string_view user = authority.substr(0, at);
    // A legacy PUBLIC:SECRET pair: the secret is no longer used and is dropped.
    user = user.substr(0, user.find(':'));
    if (user.empty()) return std::nullopt;
    dsn.public_key = std::string(user);
    std::string_view host_port = authority.substr(at + 1);
    if (host_port.empty()) return std::nullopt;
    std::string_view port;
    if (host_port.front() == '[') {
        const auto close = host_port.find(']');
        if (close == std::string_view::npos) return std::nullopt;
        if (close + 1 < host_port.size()) {
            if (host_port[close + 1] != ':') return std::nullopt;
            port = host_port.substr(close + 2);
        }
        host_port = host_port.substr(0, close + 1);
    } else if (const auto colon = host_port.find(':'); colon != std::string_view::npos) {
        port = host_port.substr(colon + 1);
        host_port = host_port.substr(0, colon);
    }
    if (host_port.empty() || host_port.find('@') != std::string_view::npos) return std::nullopt;
    if (!port.empty() && !AllDigits(port)) return std::nullopt;
    dsn.host = std::string(host_port);
    dsn.port = std::string(port);
    const auto last = path.rfind('/');
    const std::string_view project = path.substr(last + 1);
    if (!AllDigits(project)) return std::nullopt;
    dsn.project_id = std::string(project);
    dsn.path = std::string(path.substr(0, last + 1));
    return dsn;
}

std::string Dsn::EnvelopeUrl() const {
    return fmt::format("{}://{}{}{}{}api/{}/envelope/", scheme, host, port.empty() ? "" : ":", port, path, project_id);
}

std::string Dsn::ToString() const {
    return fmt::format("{}://{}@{}{}{}{}{}", scheme, public_key, host, port.empty() ? "" : ":", port, path, project_id);
}

std::string Dsn::Redacted() const {
    return fmt::format("{}://***@{}{}{}{}{}", scheme, host, port.empty() ? "" : ":", port, path, project_id);
}

std::string Dsn::AuthHeader() const {
    return fmt::format("Sentry sentry_version=7, sentry_key={}, sentry_client=eventlog/{}", public_key,
                       observability::Version());
}

Report ReportFrom(const Error& error, std::string_view what) {
    Report r;
    r.message = std::string(what);
    r.exception_type = std::string(what);
    r.exception_value = error.what();
    r.tags = {{"error.kind", ToString(error.Kind())}, {"error.source", SourceName(error.Source())}};
    if (!error.Code().empty()) r.tags.emplace_back("error.code", error.Code());
    return r;
}

ClientOptions ClientOptions::FromEnvironment(const std::map<std::string, std::string>& env) {
    ClientOptions o;
    const auto get = [&env](const char* name) -> std::string {
        auto it = env.find(name);
        return it == env.end() ? std::string{} : it->second;
    };
    if (const std::string text = get("SENTRY_CONFIG_DSN"); !text.empty()) {
        o.dsn = Dsn::Parse(text);
        if (!o.dsn) throw ConfigError(fmt::format("SENTRY_CONFIG_DSN: malformed; {}", kDsnForm));
    }
    o.environment = get("SENTRY_CONFIG_ENVIRONMENT");
    if (o.environment.empty()) o.environment = get("ENVIRONMENT");
    if (o.environment.empty()) o.environment = "Local";
    char host[256] = {0};
    if (::gethostname(host, sizeof host - 1) == 0) o.server_name = host;
    return o;
}

std::string BuildEnvelope(const Dsn& dsn, const ClientOptions& options, const Report& report,
                          const std::string& event_id) {
    const std::string now = Rfc3339Now();
    std::string event = "{\"event_id\":";
    AppendJsonString(event, event_id);
    event += ",\"timestamp\":";
    AppendJsonString(event, now);
    event += ",\"platform\":\"native\",\"level\":\"";
    event += LevelName(report.level);
    event += "\",\"logger\":";
    AppendJsonString(event, report.logger);
    if (!report.message.empty()) {
        event += ",\"message\":{\"formatted\":";
        AppendJsonString(event, report.message);
        event.push_back('}');
    }
    if (!report.exception_type.empty()) {
        event += ",\"exception\":{\"values\":[{\"type\":";
        AppendJsonString(event, report.exception_type);
        event += ",\"value\":";
        AppendJsonString(event, report.exception_value);
        event += "}]}";
    }
    event += ",\"environment\":";
    AppendJsonString(event, options.environment);
    event += ",\"release\":";
    AppendJsonString(event,
                     options.release.empty() ? "eventlog@" + std::string(observability::Version()) : options.release);
    if (!options.server_name.empty()) {
        event += ",\"server_name\":";
        AppendJsonString(event, options.server_name);
    }
    event += ",\"tags\":{";
    for (std::size_t i = 0; i < report.tags.size(); ++i) {
        if (i > 0) event.push_back(',');
        AppendJsonString(event, report.tags[i].first);
        event.push_back(':');
        AppendJsonString(event, report.tags[i].second);
    }
    event += "},\"fingerprint\":[";
    const std::vector<std::string> fingerprint = Fingerprint(report);
    for (std::size_t i = 0; i < fingerprint.size(); ++i) {
        if (i > 0) event.push_back(',');
        AppendJsonString(event, fingerprint[i]);
    }
    event.push_back(']');
    if (!report.trace_id.empty() && !report.span_id.empty()) {
        event += ",\"contexts\":{\"trace\":{\"type\":\"trace\",\"trace_id\":";
        AppendJsonString(event, report.trace_id);
        event += ",\"span_id\":";
        AppendJsonString(event, report.span_id);
        event += "}}";
    }
    event += ",\"sdk\":{\"name\":\"eventlog\",\"version\":";
    AppendJsonString(event, observability::Version());
    event += "}}";

    std::string out = "{\"event_id\":";
    AppendJsonString(out, event_id);
    out += ",\"dsn\":";
    AppendJsonString(out, dsn.ToString());
    out += ",\"sent_at\":";
    AppendJsonString(out, now);
    out += "}\n";
    fmt::format_to(std::back_inserter(out),
                   "{{\"type\":\"event\",\"length\":{},\"content_type\":\"application/json\"}}\n", event.size());
    out += event;
    out.push_back('\n');
    return out;
}

SentryClient::SentryClient(ClientOptions options) : options_(std::move(options)), enabled_(options_.dsn.has_value()) {
    if (enabled_) thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
}

SentryClient::~SentryClient() {
    if (!enabled_) return;
    Flush(options_.shutdown_timeout);
    thread_.request_stop();
    wake_.notify_all();
}

std::string SentryClient::Capture(const Report& report) {
    if (!enabled_) return {};
    const auto now = std::chrono::steady_clock::now();
    std::string key;
    for (const auto& part : Fingerprint(report)) {
        key += part;
        key.push_back('\x1f');
    }
    {
        std::lock_guard lock(mutex_);
        auto it = last_sent_.find(key);
        const bool repeat = it != last_sent_.end() && now - it->second < options_.repeat_interval;
        if (repeat || now < blocked_until_ || queue_.size() >= options_.max_queue) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return {};
        }
        if (last_sent_.size() >= 1024) {
            // Forget fingerprints whose interval has passed, so the map stays bounded.
            std::erase_if(last_sent_, [&](const auto& e) { return now - e.second >= options_.repeat_interval; });
        }
        last_sent_[key] = now;
    }
    Pending pending{NewEventId(), {}};
    pending.envelope = BuildEnvelope(*options_.dsn, options_, report, pending.event_id);
    std::string id = pending.event_id;
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(pending));
        ++enqueued_;
    }
    wake_.notify_one();
    return id;
}

bool SentryClient::Flush(std::chrono::milliseconds timeout) {
    if (!enabled_) return true;
    std::unique_lock lock(mutex_);
    const std::uint64_t target = enqueued_;
    return idle_.wait_for(lock, timeout, [&] { return finished_ >= target; });
}

void SentryClient::Run(const std::stop_token& stop) {
    observability::detail::HttpClient client;
    const std::vector<std::string> headers = {"Content-Type: application/x-sentry-envelope",
                                              "X-Sentry-Auth: " + options_.dsn->AuthHeader()};
    const std::string url = options_.dsn->EnvelopeUrl();
    bool warned = false;
    while (true) {
        Pending pending;
        {
            std::unique_lock lock(mutex_);
            wake_.wait(lock, stop, [&] { return !queue_.empty(); });
            if (stop.stop_requested()) {
                dropped_.fetch_add(queue_.size(), std::memory_order_relaxed);
                finished_ += queue_.size();
                queue_.clear();
                idle_.notify_all();
                return;
            }
            pending = std::move(queue_.front());
            queue_.pop_front();
            if (std::chrono::steady_clock::now() < blocked_until_) {
                dropped_.fetch_add(1, std::memory_order_relaxed);
                ++finished_;
                idle_.notify_all();
                continue;
            }
        }
        observability::detail::HttpRequest request;
        request.url = url;
        request.headers = headers;
        request.body = std::move(pending.envelope);
        request.timeout = options_.timeout;
        request.connect_timeout = std::min(options_.timeout, std::chrono::milliseconds(3'000));
        const observability::detail::HttpResponse response = client.Post(request);
        const bool ok = response.status >= 200 && response.status < 300;
        (ok ? sent_ : dropped_).fetch_add(1, std::memory_order_relaxed);
        if (const auto wait = RetryAfter(response.status, response.rate_limits, response.retry_after)) {
            std::lock_guard lock(mutex_);
            blocked_until_ = std::max(blocked_until_, std::chrono::steady_clock::now() + *wait);
        }
        if (ok) {
            warned = false;
        } else if (!warned) {
            // Never the DSN's key: the URL is logged redacted, the auth header not at all.
            log::Warning("sentry_send_failed",
                         {{"dsn", options_.dsn->Redacted()},
                          {"status", static_cast<std::int64_t>(response.status)},
                          {"error", response.status == 0 ? response.error : std::string("HTTP error")}});
            warned = true;
        }
        {
            std::lock_guard lock(mutex_);
            ++finished_;
        }
        idle_.notify_all();
    }
}

}  // namespace eventlog::sentry
