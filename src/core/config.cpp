#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <fstream>
#include <sstream>

extern char** environ;

namespace eventlog {
namespace {

std::string Trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(" \t\r\n");
    return std::string(s.substr(b, e - b + 1));
}

std::string PercentDecode(std::string_view s, const char* variable) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%') {
            int value = 0;
            if (i + 2 >= s.size()) {
                throw ConfigError(fmt::format("{}: truncated percent-escape in URL", variable));
            }
            auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, value, 16);
            if (ec != std::errc() || p != s.data() + i + 3) {
                throw ConfigError(fmt::format("{}: bad percent-escape in URL", variable));
            }
            out.push_back(static_cast<char>(value));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

/// scheme://[user[:password]@]host[:port][/path][?query]
struct Url {
    std::string scheme, user, password, host, path, query;
    int port{0};
    bool has_user{false}, has_password{false};
};

int ParsePort(std::string_view text, const char* variable) {
    int port = 0;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    if (ec != std::errc() || p != text.data() + text.size() || port < 1 || port > 65535) {
        throw ConfigError(fmt::format("{}: expected a port number 1..65535, got '{}'", variable, text));
    }
    return port;
}

Url ParseUrl(std::string_view text, const char* variable) {
    Url url;
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string_view::npos || scheme_end == 0) {
        throw ConfigError(fmt::format("{}: expected a URL like scheme://user:password@host:port/name", variable));
    }
    url.scheme = std::string(text.substr(0, scheme_end));
    std::string_view rest = text.substr(scheme_end + 3);
    const auto q = rest.find('?');
    if (q != std::string_view::npos) {
        url.query = std::string(rest.substr(q + 1));
        rest = rest.substr(0, q);
    }
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    if (slash != std::string_view::npos) url.path = PercentDecode(rest.substr(slash + 1), variable);
    const auto at = authority.rfind('@');
    if (at != std::string_view::npos) {
        std::string_view userinfo = authority.substr(0, at);
        authority = authority.substr(at + 1);
        const auto colon = userinfo.find(':');
        url.has_user = true;
        url.user = PercentDecode(userinfo.substr(0, colon), variable);
        if (colon != std::string_view::npos) {
            url.has_password = true;
            url.password = PercentDecode(userinfo.substr(colon + 1), variable);
        }
    }
    const auto colon = authority.rfind(':');
    if (colon != std::string_view::npos && authority.find(']') == std::string_view::npos) {
        url.host = std::string(authority.substr(0, colon));
        url.port = ParsePort(authority.substr(colon + 1), variable);
    } else {
        url.host = std::string(authority);
    }
    if (url.host.empty()) throw ConfigError(fmt::format("{}: the URL has no host", variable));
    return url;
}

class Reader {
public:
    explicit Reader(const EnvMap& env) : env_(env) {}

    const std::string* Find(const char* name) const {
        auto it = env_.find(name);
        if (it == env_.end() || it->second.empty()) return nullptr;
        return &it->second;
    }
    std::string String(const char* name, const std::string& fallback) const {
        const auto* v = Find(name);
        return v ? *v : fallback;
    }
    bool Bool(const char* name, bool fallback) const {
        const auto* v = Find(name);
        if (!v) return fallback;
        std::string s = *v;
        std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
        if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
        if (s == "0" || s == "false" || s == "no" || s == "off") return false;
        throw ConfigError(fmt::format("{}: expected true or false, got '{}'", name, *v));
    }
    long Int(const char* name, long fallback, long min, long max) const {
        const auto* v = Find(name);
        if (!v) return fallback;
        long value = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), value);
        if (ec != std::errc() || p != v->data() + v->size() || value < min || value > max) {
            throw ConfigError(fmt::format("{}: expected an integer from {} to {}, got '{}'", name, min, max, *v));
        }
        return value;
    }
    /// Seconds, possibly fractional ("0.5"), returned in milliseconds.
    std::chrono::milliseconds Seconds(const char* name, std::chrono::milliseconds fallback, double min,
                                      double max) const {
        const auto* v = Find(name);
        if (!v) return fallback;
        char* end = nullptr;
        errno = 0;
        const double value = std::strtod(v->c_str(), &end);
        if (errno != 0 || end != v->c_str() + v->size() || !(value >= min && value <= max)) {
            throw ConfigError(
                fmt::format("{}: expected a number of seconds from {} to {}, got '{}'", name, min, max, *v));
        }
        return std::chrono::milliseconds(static_cast<long long>(value * 1000.0));
    }

private:
    const EnvMap& env_;
};

void CheckIdentifier(const std::string& value, const char* name) {
    const bool ok =
        !value.empty() && value.size() <= 128 &&
        std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; }) &&
        !std::isdigit(static_cast<unsigned char>(value[0]));
    if (!ok) {
        throw ConfigError(fmt::format(
            "{}: expected an identifier (letters, digits, _; not starting with a digit), got '{}'", name, value));
    }
}

std::string QuoteConnValue(const std::string& v) {
    std::string out = "'";
    for (char c : v) {
        if (c == '\'' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('\'');
    return out;
}

}  // namespace

EnvMap ParseDotenv(const std::string& text) {
    EnvMap env;
    std::istringstream in(text);
    std::string line;
    int line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        std::string t = Trim(line);
        if (t.empty() || t[0] == '#') continue;
        if (t.rfind("export ", 0) == 0) t = Trim(t.substr(7));
        const auto eq = t.find('=');
        if (eq == std::string::npos || eq == 0) {
            throw ConfigError(fmt::format(".env line {}: expected NAME=value", line_no));
        }
        std::string name = Trim(t.substr(0, eq));
        std::string value = Trim(t.substr(eq + 1));
        if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
            value = value.substr(1, value.size() - 2);
        } else {
            const auto hash = value.find(" #");
            if (hash != std::string::npos) value = Trim(value.substr(0, hash));
        }
        env[name] = value;
    }
    return env;
}

EnvMap ReadEnvironment(const std::string& dotenv_path) {
    EnvMap env;
    if (!dotenv_path.empty()) {
        std::ifstream file(dotenv_path);
        if (file) {
            std::stringstream buffer;
            buffer << file.rdbuf();
            env = ParseDotenv(buffer.str());
        }
    }
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        const auto eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        env[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
    return env;
}

std::string PostgresConfig::ConnInfo() const {
    std::string s = fmt::format("host={} port={} user={} dbname={}", QuoteConnValue(host), port, QuoteConnValue(user),
                                QuoteConnValue(database));
    if (!password.empty()) s += " password=" + QuoteConnValue(password);
    if (!options.empty()) s += " " + options;
    return s;
}

std::string PostgresConfig::Redacted() const {
    return fmt::format("postgres://{}@{}:{}/{}", user, host, port, database);
}

std::string ClickHouseConfig::BaseUrl() const { return fmt::format("{}://{}:{}", protocol, host, port); }

std::string ClickHouseConfig::Redacted() const {
    return fmt::format("{}://{}@{}:{}/{}", protocol, user, host, port, database);
}

Config LoadConfig(const EnvMap& env) {
    Reader r(env);
    Config c;
    c.debug = r.Bool("DEBUG", false);
    c.secret_key = r.String("SECRET_KEY", "");
    {
        std::string hosts = r.String("ALLOWED_HOSTS", "localhost,127.0.0.1");
        std::stringstream ss(hosts);
        std::string h;
        while (std::getline(ss, h, ',')) {
            h = Trim(h);
            if (!h.empty()) c.allowed_hosts.push_back(h);
        }
    }
    c.environment = r.String("ENVIRONMENT", "Local");
    c.time_zone = r.String("TIME_ZONE", "UTC");
    c.log_level = r.String("LOG_LEVEL", c.debug ? "debug" : "info");
    if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warning" && c.log_level != "error") {
        throw ConfigError(fmt::format("LOG_LEVEL: expected debug, info, warning or error, got '{}'", c.log_level));
    }

    // PostgreSQL: DATABASE_URL wins over POSTGRES_*.
    auto& pg = c.postgres;
    if (const auto* url_text = r.Find("DATABASE_URL")) {
        const Url url = ParseUrl(*url_text, "DATABASE_URL");
        if (url.scheme != "postgres" && url.scheme != "postgresql") {
            throw ConfigError(
                fmt::format("DATABASE_URL: expected scheme postgres:// or postgresql://, got '{}://'", url.scheme));
        }
        pg.host = url.host;
        pg.port = url.port ? url.port : 5432;
        if (url.has_user) pg.user = url.user;
        pg.password = url.password;
        if (!url.path.empty()) pg.database = url.path;
        std::string opts = url.query;
        std::replace(opts.begin(), opts.end(), '&', ' ');
        pg.options = opts;
    } else {
        pg.host = r.String("POSTGRES_HOST", pg.host);
        pg.port = static_cast<int>(r.Int("POSTGRES_PORT", pg.port, 1, 65535));
        pg.user = r.String("POSTGRES_USER", pg.user);
        pg.password = r.String("POSTGRES_PASSWORD", "");
        pg.database = r.String("POSTGRES_DB", pg.database);
    }

    // ClickHouse: CLICKHOUSE_URI wins over the parts.
    auto& ch = c.clickhouse;
    ch.protocol = r.String("CLICKHOUSE_PROTOCOL", ch.protocol);
    ch.host = r.String("CLICKHOUSE_HOST", ch.host);
    ch.port = static_cast<int>(r.Int("CLICKHOUSE_PORT", ch.port, 1, 65535));
    ch.user = r.String("CLICKHOUSE_USER", ch.user);
    ch.password = r.String("CLICKHOUSE_PASSWORD", "");
    ch.database = r.String("CLICKHOUSE_SCHEMA", ch.database);
    if (const auto* uri = r.Find("CLICKHOUSE_URI")) {
        const Url url = ParseUrl(*uri, "CLICKHOUSE_URI");
        ch.protocol = url.scheme;
        ch.host = url.host;
        ch.port = url.port ? url.port : (url.scheme == "https" ? 8443 : 8123);
        if (url.has_user) ch.user = url.user;
        if (url.has_user) ch.password = url.password;
        if (!url.path.empty()) ch.database = url.path;
    }
    if (ch.protocol != "http" && ch.protocol != "https") {
        throw ConfigError(fmt::format("CLICKHOUSE_PROTOCOL: expected http or https, got '{}'", ch.protocol));
    }
    if (ch.user.empty()) ch.user = "default";
    ch.table = r.String("CLICKHOUSE_EVENT_LOG_TABLE_NAME", ch.table);
    CheckIdentifier(ch.table, "CLICKHOUSE_EVENT_LOG_TABLE_NAME");
    CheckIdentifier(ch.database, "CLICKHOUSE_SCHEMA");
    ch.connect_timeout = r.Seconds("CLICKHOUSE_CONNECT_TIMEOUT", ch.connect_timeout, 0.001, 3600);
    ch.send_receive_timeout = r.Seconds("CLICKHOUSE_SEND_RECEIVE_TIMEOUT", ch.send_receive_timeout, 0.001, 3600);

    auto& relay = c.relay;
    relay.event_batch_size = static_cast<int>(r.Int("EVENT_BATCH_SIZE", relay.event_batch_size, 1, 1'000'000));
    relay.processing_interval = r.Seconds("EVENT_PROCESSING_INTERVAL", relay.processing_interval, 0.001, 86400);
    relay.clickhouse_batch_size =
        static_cast<int>(r.Int("CLICKHOUSE_BATCH_SIZE", relay.clickhouse_batch_size, 1, 1'000'000));
    relay.backoff_base =
        std::chrono::milliseconds(r.Int("RELAY_BACKOFF_BASE_MS", relay.backoff_base.count(), 1, 3'600'000));
    relay.backoff_cap =
        std::chrono::milliseconds(r.Int("RELAY_BACKOFF_CAP_MS", relay.backoff_cap.count(), 1, 86'400'000));
    if (relay.backoff_cap < relay.backoff_base) {
        throw ConfigError("RELAY_BACKOFF_CAP_MS: expected a value not below RELAY_BACKOFF_BASE_MS");
    }
    relay.max_attempts = static_cast<int>(r.Int("RELAY_MAX_ATTEMPTS", relay.max_attempts, 1, 1000));
    relay.shutdown_timeout =
        std::chrono::milliseconds(r.Int("RELAY_SHUTDOWN_TIMEOUT_MS", relay.shutdown_timeout.count(), 0, 3'600'000));
    relay.claim_max_bytes = r.Int("RELAY_CLAIM_MAX_BYTES", relay.claim_max_bytes, 1024, 512LL << 20);

    c.http_host = r.String("HTTP_HOST", c.http_host);
    c.http_port = static_cast<int>(r.Int("HTTP_PORT", c.http_port, 1, 65535));
    c.sentry_dsn = r.String("SENTRY_CONFIG_DSN", "");
    c.sentry_environment = r.String("SENTRY_CONFIG_ENVIRONMENT", c.environment);
    c.otel_endpoint = r.String("OTEL_EXPORTER_OTLP_ENDPOINT", "");
    return c;
}

}  // namespace eventlog
