#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <iterator>
#include <memory>
#include <optional>
#include <set>
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

/// How to write a URL whose parts contain reserved characters; part of every URL error.
constexpr std::string_view kEncodingHint =
    "expected scheme://user:password@host:port/name, with reserved characters in the user name, password and name "
    "percent-encoded (/ as %2F, ? as %3F, # as %23, @ as %40, : as %3A, % as %25, space as %20)";

/// Strict %XX decoding for query-string pieces; the message never contains the text.
std::string PercentDecode(std::string_view s, const char* variable) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        int value = 0;
        const char* first = s.data() + i + 1;
        const char* last = s.data() + std::min(i + 3, s.size());
        auto [p, ec] = std::from_chars(first, last, value, 16);
        if (last - first != 2 || ec != std::errc() || p != last) {
            throw ConfigError(fmt::format("{}: bad percent-escape in the query string; {}", variable, kEncodingHint));
        }
        out.push_back(static_cast<char>(value));
        i += 2;
    }
    return out;
}

/// scheme://[user[:password]@]host[:port][/path][?query], parsed by libcurl's URL API. user, password and
/// path are percent-decoded; query is raw.
struct Url {
    std::string scheme, user, password, host, path, query;
    int port{0};
    bool has_user{false};
};

using CurlUrl = std::unique_ptr<CURLU, decltype(&curl_url_cleanup)>;

/// A TCP port written in a URL: 1..65535, digits only; nullopt otherwise.
std::optional<int> ParsePort(std::string_view text) {
    int value = 0;
    const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || p != text.data() + text.size() || value < 1 || value > 65535) return std::nullopt;
    return value;
}

/// CLICKHOUSE_SHARDS: "host:port,host:port;host:port,..." (replicas by ',', shards by ';'), every port 1..65535, no
/// node twice; an IPv6 host in brackets. Empty: no shards.
std::vector<std::vector<std::string>> ParseShards(const std::string& text) {
    std::vector<std::vector<std::string>> shards;
    if (text.empty()) return shards;
    const auto bad = [] {
        return ConfigError(
            "CLICKHOUSE_SHARDS: expected the cluster's nodes as host:port (their HTTP port), the replicas of a shard "
            "separated by ',' and the shards by ';', as in 10.0.0.1:8123,10.0.0.2:8123;10.0.0.3:8123,10.0.0.4:8123");
    };
    std::set<std::string> seen;
    std::stringstream groups(text);
    for (std::string group; std::getline(groups, group, ';');) {
        std::vector<std::string> replicas;
        std::stringstream items(group);
        for (std::string item; std::getline(items, item, ',');) {
            const auto colon = item.rfind(':');
            const auto bracket = item.rfind(']');
            if (colon == std::string::npos || colon == 0 || (bracket != std::string::npos && bracket > colon)) throw bad();
            const std::string host = item.substr(0, colon);
            const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
            if (!ParsePort(item.substr(colon + 1)) || host.find_first_of("@/?# \t") != std::string::npos ||
                (!bracketed && host.find_first_of("[]:") != std::string::npos)) {
                throw bad();
            }
            if (!seen.insert(item).second) {
                throw ConfigError("CLICKHOUSE_SHARDS: a node is listed twice; each node is one replica of one shard");
            }
            replicas.push_back(item);
        }
        if (replicas.empty()) throw bad();
        shards.push_back(std::move(replicas));
    }
    if (text.back() == ';' || text.back() == ',') throw bad();
    return shards;
}

/// libpq's multi-host URL (`postgres://user:pw@h1:p1,h2:p2/db`, libpq tries the hosts in order) split for a parser
/// that takes one host: `single` is the URL with the first host only, `hosts` and `ports` are libpq's host= and port=
/// lists. nullopt when the authority names one host.
struct HostList {
    std::string single, hosts, ports;
};
std::optional<HostList> SplitHostList(const std::string& text, const char* variable) {
    const auto scheme_end = text.find("://");
    if (scheme_end == std::string::npos) return std::nullopt;
    const auto authority_end = std::min(text.find_first_of("/?#", scheme_end + 3), text.size());
    auto start = text.rfind('@', authority_end);
    start = (start == std::string::npos || start < scheme_end) ? scheme_end + 3 : start + 1;
    const std::string authority = text.substr(start, authority_end - start);
    if (authority.find(',') == std::string::npos) return std::nullopt;
    HostList out;
    std::string first;
    std::stringstream items(authority);
    for (std::string item; std::getline(items, item, ',');) {
        std::string host = item, port = "5432";
        const auto bracket = item.rfind(']');
        const auto colon = item.rfind(':');
        if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
            host = item.substr(0, colon);
            port = item.substr(colon + 1);
        }
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        const bool host_ok = !host.empty() && host.find_first_of("[]@ \t") == std::string::npos;
        if (!host_ok || !ParsePort(port)) {
            throw ConfigError(
                fmt::format("{}: expected a list of host:port separated by commas after '@' (port 1..65535), as in "
                            "postgres://user:password@host1:5432,host2:5432/name",
                            variable));
        }
        if (first.empty()) first = item;
        out.hosts += (out.hosts.empty() ? "" : ",") + host;
        out.ports += (out.ports.empty() ? "" : ",") + port;
    }
    out.single = text.substr(0, start) + first + text.substr(authority_end);
    return out;
}

/// One part of a parsed URL; nullopt when the URL has none. Messages name the part, never its value.
std::optional<std::string> UrlPart(CURLU* url, CURLUPart part, unsigned int flags, const char* variable,
                                   const char* what) {
    char* text = nullptr;
    const CURLUcode rc = curl_url_get(url, part, &text, flags);
    if (rc == CURLUE_OK) {
        std::string value(text);
        curl_free(text);
        return value;
    }
    if (rc == CURLUE_NO_USER || rc == CURLUE_NO_PASSWORD || rc == CURLUE_NO_PORT || rc == CURLUE_NO_QUERY ||
        rc == CURLUE_NO_FRAGMENT || rc == CURLUE_NO_HOST) {
        return std::nullopt;
    }
    throw ConfigError(
        fmt::format("{}: cannot read the URL's {} ({}); {}", variable, what, curl_url_strerror(rc), kEncodingHint));
}

Url ParseUrl(const std::string& text, const char* variable) {
    // A '/', '?' or '#' written raw in a user name or password ends the authority early: the rest of the
    // password and the real "@host" land in the path, query or fragment (or the password's head in the port).
    // Refuse that, naming the cause, instead of connecting somewhere else with half a password.
    const std::string raw_at_message = fmt::format(
        "{}: a '/', '?', '#' or '@' in the user name or password must be percent-encoded; {}", variable, kEncodingHint);
    if (const auto scheme_end = text.find("://"); scheme_end != std::string::npos) {
        const auto at = text.rfind('@');
        if (at != std::string::npos && at > scheme_end && text.find_first_of("/?#", scheme_end + 3) < at) {
            throw ConfigError(raw_at_message);
        }
    }
    const CurlUrl handle(curl_url(), &curl_url_cleanup);
    if (!handle) throw ConfigError(fmt::format("{}: out of memory parsing the URL", variable));
    const CURLUcode rc = curl_url_set(handle.get(), CURLUPART_URL, text.c_str(), CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        throw ConfigError(fmt::format("{}: not a valid URL ({}); {}", variable, curl_url_strerror(rc), kEncodingHint));
    }
    CURLU* u = handle.get();
    const auto raw_path = UrlPart(u, CURLUPART_PATH, 0, variable, "path");
    const auto raw_query = UrlPart(u, CURLUPART_QUERY, 0, variable, "query string");
    const auto fragment = UrlPart(u, CURLUPART_FRAGMENT, 0, variable, "fragment");
    const auto has_at = [](const std::optional<std::string>& part) {
        return part && part->find('@') != std::string::npos;
    };
    if (fragment || has_at(raw_path) || has_at(raw_query)) throw ConfigError(raw_at_message);
    const auto after_scheme = text.find("://");
    if (after_scheme != std::string::npos && text.compare(after_scheme + 3, 1, "/") == 0) {
        throw ConfigError(fmt::format("{}: the URL has no host; {}", variable, kEncodingHint));
    }
    Url url;
    url.scheme = UrlPart(u, CURLUPART_SCHEME, 0, variable, "scheme").value_or("");
    url.host = UrlPart(u, CURLUPART_HOST, 0, variable, "host").value_or("");
    if (url.host.size() >= 2 && url.host.front() == '[' && url.host.back() == ']') {
        url.host = url.host.substr(1, url.host.size() - 2);
    }
    if (url.host.empty()) throw ConfigError(fmt::format("{}: the URL has no host; {}", variable, kEncodingHint));
    if (const auto user = UrlPart(u, CURLUPART_USER, CURLU_URLDECODE, variable, "user name")) {
        url.has_user = true;
        url.user = *user;
        url.password = UrlPart(u, CURLUPART_PASSWORD, CURLU_URLDECODE, variable, "password").value_or("");
    } else if (const auto password = UrlPart(u, CURLUPART_PASSWORD, CURLU_URLDECODE, variable, "password")) {
        url.has_user = true;
        url.password = *password;
    }
    if (const auto port = UrlPart(u, CURLUPART_PORT, 0, variable, "port")) {
        const auto value = ParsePort(*port);
        if (!value) throw ConfigError(fmt::format("{}: expected a port number 1..65535", variable));
        url.port = *value;
    }
    url.path = UrlPart(u, CURLUPART_PATH, CURLU_URLDECODE, variable, "path").value_or("");
    if (!url.path.empty() && url.path.front() == '/') url.path.erase(0, 1);
    url.query = raw_query.value_or("");
    return url;
}

/// True for variables whose values are secrets: never shown in messages.
bool IsSecretName(std::string_view name) {
    const auto ends_with = [&](std::string_view suffix) {
        return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
    };
    return name == "SECRET_KEY" || name == "DATABASE_URL" || name == "CLICKHOUSE_URI" || ends_with("_PASSWORD") ||
           ends_with("_DSN");
}

/// `value` quoted for a message, or a placeholder when `name` holds a secret.
std::string Shown(std::string_view name, const std::string& value) {
    return IsSecretName(name) ? std::string("a value (not shown)") : fmt::format("'{}'", value);
}

bool IsSslmode(std::string_view mode) {
    return mode == "disable" || mode == "allow" || mode == "prefer" || mode == "require" || mode == "verify-ca" ||
           mode == "verify-full";
}

void CheckReadableFile(const std::string& path, const char* name) {
    if (::access(path.c_str(), R_OK) != 0) {
        throw ConfigError(fmt::format("{}: cannot read '{}': {}", name, path, std::strerror(errno)));
    }
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
        throw ConfigError(fmt::format("{}: expected true or false, got {}", name, Shown(name, *v)));
    }
    long Int(const char* name, long fallback, long min, long max) const {
        const auto* v = Find(name);
        if (!v) return fallback;
        long value = 0;
        auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), value);
        if (ec != std::errc() || p != v->data() + v->size() || value < min || value > max) {
            throw ConfigError(
                fmt::format("{}: expected an integer from {} to {}, got {}", name, min, max, Shown(name, *v)));
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
                fmt::format("{}: expected a number of seconds from {} to {}, got {}", name, min, max, Shown(name, *v)));
        }
        return std::chrono::milliseconds(static_cast<long long>(value * 1000.0));
    }

private:
    const EnvMap& env_;
};

bool IsIdentifier(const std::string& value) {
    return !value.empty() && value.size() <= 128 &&
           std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; }) &&
           !std::isdigit(static_cast<unsigned char>(value[0]));
}

void CheckIdentifier(const std::string& value, const char* name) {
    if (!IsIdentifier(value)) {
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

/// A host as written in a URL: an IPv6 address in brackets.
std::string UrlHost(const std::string& host) { return host.find(':') != std::string::npos ? "[" + host + "]" : host; }

EnvMap ParseDotenvNamed(const std::string& text, const std::string& source) {
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
            throw ConfigError(fmt::format("{} line {}: expected NAME=value", source, line_no));
        }
        std::string name = Trim(t.substr(0, eq));
        std::string value = Trim(t.substr(eq + 1));
        if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
            value = value.substr(1, value.size() - 2);
        } else if (!value.empty() && value.front() == '#' && eq + 1 < t.size() &&
                   (t[eq + 1] == ' ' || t[eq + 1] == '\t')) {
            value.clear();  // "NAME=   # comment": an empty value ("NAME=#x" is "#x")
        } else {
            const auto hash = value.find(" #");
            if (hash != std::string::npos) value = Trim(value.substr(0, hash));
        }
        env[name] = value;
    }
    return env;
}

/// Closes a file descriptor on scope exit.
struct FdCloser {
    explicit FdCloser(int descriptor) : fd(descriptor) {}
    ~FdCloser() { ::close(fd); }
    int fd;
    FdCloser(const FdCloser&) = delete;
    FdCloser& operator=(const FdCloser&) = delete;
};

/// True when variable `name` (with `value`) carries a secret: SECRET_KEY, a password, or a URL or DSN with a
/// password in it.
bool HoldsSecret(const std::string& name, const std::string& value) {
    if (name == "SECRET_KEY" || name.find("PASSWORD") != std::string::npos) return true;
    if (name == "DATABASE_URL" || name == "CLICKHOUSE_URI" || name == "SENTRY_CONFIG_DSN") {
        const auto scheme = value.find("://");
        const auto at = value.find('@');
        if (scheme == std::string::npos || at == std::string::npos) return false;
        const auto colon = value.find(':', scheme + 3);
        return name == "SENTRY_CONFIG_DSN" || (colon != std::string::npos && colon < at);
    }
    return false;
}

/// Reads and parses a `.env` file, refusing one that another user could have written. Checked on the open
/// descriptor, so the file checked is the file read. Missing: empty; /dev/null: empty.
EnvMap ReadDotenvFile(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return {};
        throw ConfigError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    }
    const FdCloser closer(fd);
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw ConfigError(fmt::format("{}: cannot stat: {}", path, std::strerror(errno)));
    struct stat null_st {};
    if (S_ISCHR(st.st_mode) && ::stat("/dev/null", &null_st) == 0 && st.st_rdev == null_st.st_rdev) return {};
    if (st.st_uid != ::geteuid()) {
        throw ConfigError(fmt::format(
            "{}: refusing to read it: owned by uid {}, not by this process's user (uid {}); a file another user "
            "controls could send the credentials elsewhere",
            path, st.st_uid, ::geteuid()));
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        throw ConfigError(fmt::format(
            "{}: refusing to read it: writable by group or others (mode {:o}); run chmod go-w on it (make run writes "
            "it with mode 600)",
            path, st.st_mode & 07777));
    }
    std::string text;
    char buffer[8192];
    for (;;) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            throw ConfigError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
        }
        text.append(buffer, static_cast<std::size_t>(n));
    }
    EnvMap parsed = ParseDotenvNamed(text, path);
    // A file other users can read must not hold a secret (issue 20): it is refused, naming the variables (never
    // their values), like a file they can write.
    if ((st.st_mode & (S_IRGRP | S_IROTH)) != 0) {
        std::string secrets;
        for (const auto& [name, value] : parsed) {
            if (value.empty() || !HoldsSecret(name, value)) continue;
            secrets += (secrets.empty() ? "" : ", ") + name;
        }
        if (!secrets.empty()) {
            throw ConfigError(fmt::format(
                "{}: refusing to read it: it holds secrets ({}) and is readable by group or others (mode {:o}); run "
                "chmod 600 on it",
                path, secrets, st.st_mode & 07777));
        }
    }
    return parsed;
}

}  // namespace

EnvMap ParseDotenv(const std::string& text) { return ParseDotenvNamed(text, ".env"); }

EnvMap ReadEnvironment(const std::string& dotenv_path, std::vector<std::string>* ignored) {
    EnvMap file = dotenv_path.empty() ? EnvMap{} : ReadDotenvFile(dotenv_path);
    EnvMap process;
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        const auto eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        process[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
    // One source per connection: credentials never go to a host (or trust store) named by the other source.
    const auto drop_group_if_environment_sets_it = [&](const auto& group) {
        const bool environment_sets = std::any_of(std::begin(group), std::end(group), [&](const char* name) {
            const auto it = process.find(name);
            return it != process.end() && !it->second.empty();
        });
        if (!environment_sets) return;
        for (const char* name : group) {
            const auto it = file.find(name);
            if (it == file.end()) continue;
            if (ignored != nullptr && !it->second.empty()) ignored->emplace_back(name);
            file.erase(it);
        }
    };
    drop_group_if_environment_sets_it(kPostgresConnectionVariables);
    drop_group_if_environment_sets_it(kClickHouseConnectionVariables);
    EnvMap env = std::move(file);
    for (auto& [name, value] : process) env[name] = std::move(value);
    return env;
}

std::chrono::milliseconds PostgresConfig::ConnectTimeout() const {
    return std::clamp<std::chrono::milliseconds>(statement_timeout + std::chrono::seconds(2), std::chrono::seconds(2),
                                                 std::chrono::seconds(10));
}

std::string PostgresConfig::ConnInfo() const {
    std::string s = fmt::format("host={} port={} user={} dbname={}", QuoteConnValue(host), port, QuoteConnValue(user),
                                QuoteConnValue(database));
    if (!password.empty()) s += " password=" + QuoteConnValue(password);
    if (!sslmode.empty()) s += " sslmode=" + QuoteConnValue(sslmode);
    if (!sslrootcert.empty()) s += " sslrootcert=" + QuoteConnValue(sslrootcert);
    for (const auto& [keyword, value] : options) s += " " + keyword + "=" + QuoteConnValue(value);
    return s;
}

std::string PostgresConfig::Redacted() const {
    return fmt::format("postgres://{}@{}:{}/{}", user, UrlHost(host), port, database);
}

std::string ClickHouseConfig::BaseUrl() const { return fmt::format("{}://{}:{}", protocol, UrlHost(host), port); }

std::string ClickHouseConfig::Redacted() const {
    return fmt::format("{}://{}@{}:{}/{}", protocol, user, UrlHost(host), port, database);
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

    // PostgreSQL: DATABASE_URL wins over POSTGRES_* (credentials included); its ?sslmode= and ?sslrootcert= win
    // over POSTGRES_SSLMODE and POSTGRES_SSLROOTCERT.
    auto& pg = c.postgres;
    pg.sslmode = r.String("POSTGRES_SSLMODE", "");
    if (!pg.sslmode.empty() && !IsSslmode(pg.sslmode)) {
        throw ConfigError(fmt::format(
            "POSTGRES_SSLMODE: expected disable, allow, prefer, require, verify-ca or verify-full, got '{}'",
            pg.sslmode));
    }
    pg.sslrootcert = r.String("POSTGRES_SSLROOTCERT", "");
    if (const auto* url_text = r.Find("DATABASE_URL")) {
        // Several hosts (libpq's failover): the first is parsed as the URL's, the lists go to libpq as host= and
        // port=, which come after it in the connection string and so win (docs/delivery.md, "Failover").
        const auto host_list = SplitHostList(*url_text, "DATABASE_URL");
        const Url url = ParseUrl(host_list ? host_list->single : *url_text, "DATABASE_URL");
        if (url.scheme != "postgres" && url.scheme != "postgresql") {
            throw ConfigError(
                fmt::format("DATABASE_URL: expected scheme postgres:// or postgresql://, got '{}://'", url.scheme));
        }
        pg.host = url.host;
        pg.port = url.port ? url.port : 5432;
        if (url.has_user && !url.user.empty()) pg.user = url.user;
        pg.password = url.password;
        if (!url.path.empty()) pg.database = url.path;
        std::stringstream query(url.query);
        std::string item;
        while (std::getline(query, item, '&')) {
            if (item.empty()) continue;
            const auto eq = item.find('=');
            const std::string keyword = PercentDecode(item.substr(0, eq), "DATABASE_URL");
            const std::string value =
                eq == std::string::npos ? std::string() : PercentDecode(item.substr(eq + 1), "DATABASE_URL");
            const bool keyword_ok = !keyword.empty() && std::all_of(keyword.begin(), keyword.end(), [](char ch) {
                return (ch >= 'a' && ch <= 'z') || ch == '_';
            });
            if (!keyword_ok) {
                throw ConfigError(
                    "DATABASE_URL: expected query parameters that are libpq keywords (lower-case letters and _), "
                    "as in ?sslmode=verify-full");
            }
            if (keyword == "sslmode") {
                if (!IsSslmode(value)) {
                    throw ConfigError(
                        "DATABASE_URL: expected sslmode disable, allow, prefer, require, verify-ca or verify-full");
                }
                pg.sslmode = value;
            } else if (keyword == "sslrootcert") {
                pg.sslrootcert = value;
            } else {
                pg.options.emplace_back(keyword, value);
            }
        }
        if (host_list) {
            pg.options.emplace_back("host", host_list->hosts);
            pg.options.emplace_back("port", host_list->ports);
        }
    } else {
        pg.host = r.String("POSTGRES_HOST", pg.host);
        pg.port = static_cast<int>(r.Int("POSTGRES_PORT", pg.port, 1, 65535));
        pg.user = r.String("POSTGRES_USER", pg.user);
        pg.password = r.String("POSTGRES_PASSWORD", "");
        pg.database = r.String("POSTGRES_DB", pg.database);
    }
    if (!pg.sslrootcert.empty() && pg.sslrootcert != "system")
        CheckReadableFile(pg.sslrootcert, "POSTGRES_SSLROOTCERT");
    pg.statement_timeout = r.Seconds("POSTGRES_STATEMENT_TIMEOUT", pg.statement_timeout, 0, 3600);

    // ClickHouse: CLICKHOUSE_URI wins over the parts; credentials in it win over CLICKHOUSE_USER/PASSWORD.
    auto& ch = c.clickhouse;
    ch.protocol = r.String("CLICKHOUSE_PROTOCOL", ch.protocol);
    if (ch.protocol != "http" && ch.protocol != "https") {
        throw ConfigError(fmt::format("CLICKHOUSE_PROTOCOL: expected http or https, got '{}'", ch.protocol));
    }
    ch.host = r.String("CLICKHOUSE_HOST", ch.host);
    ch.port = static_cast<int>(r.Int("CLICKHOUSE_PORT", ch.port, 1, 65535));
    ch.user = r.String("CLICKHOUSE_USER", ch.user);
    ch.password = r.String("CLICKHOUSE_PASSWORD", "");
    ch.database = r.String("CLICKHOUSE_SCHEMA", ch.database);
    bool database_from_uri = false;
    if (const auto* uri = r.Find("CLICKHOUSE_URI")) {
        const Url url = ParseUrl(*uri, "CLICKHOUSE_URI");
        if (url.scheme != "http" && url.scheme != "https") {
            throw ConfigError(
                fmt::format("CLICKHOUSE_URI: expected scheme http:// or https://, got '{}://'", url.scheme));
        }
        ch.protocol = url.scheme;
        ch.host = url.host;
        ch.port = url.port ? url.port : (url.scheme == "https" ? 8443 : 8123);
        if (url.has_user) {
            ch.user = url.user;
            ch.password = url.password;
        }
        if (!url.path.empty()) {
            ch.database = url.path;
            database_from_uri = true;
        }
    }
    if (ch.user.empty()) ch.user = "default";
    ch.ca_file = r.String("CLICKHOUSE_CA_FILE", "");
    if (!ch.ca_file.empty()) {
        if (ch.protocol != "https") {
            throw ConfigError(
                "CLICKHOUSE_CA_FILE: set, but the ClickHouse connection is http://; use https:// (CLICKHOUSE_URI or "
                "CLICKHOUSE_PROTOCOL) so that the certificate is verified");
        }
        CheckReadableFile(ch.ca_file, "CLICKHOUSE_CA_FILE");
    }
    ch.table = r.String("CLICKHOUSE_EVENT_LOG_TABLE_NAME", ch.table);
    CheckIdentifier(ch.table, "CLICKHOUSE_EVENT_LOG_TABLE_NAME");
    ch.cluster = r.String("CLICKHOUSE_CLUSTER", ch.cluster);
    if (!ch.cluster.empty()) CheckIdentifier(ch.cluster, "CLICKHOUSE_CLUSTER");
    ch.shards = ParseShards(r.String("CLICKHOUSE_SHARDS", ""));
    ch.insert_quorum = static_cast<int>(r.Int("CLICKHOUSE_INSERT_QUORUM", ch.insert_quorum, 0, 64));
    if (database_from_uri) {
        if (!IsIdentifier(ch.database)) {
            throw ConfigError(
                "CLICKHOUSE_URI: expected the path to be a database name (letters, digits, _; not starting with a "
                "digit)");
        }
    } else {
        CheckIdentifier(ch.database, "CLICKHOUSE_SCHEMA");
    }
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
    relay.poll_interval = std::chrono::milliseconds(r.Int("RELAY_POLL_MS", relay.poll_interval.count(), 0, 60'000));
    relay.idle_linger =
        std::chrono::milliseconds(r.Int("RELAY_IDLE_LINGER_MS", relay.idle_linger.count(), 0, 3'600'000));
    relay.idempotency_window =
        std::chrono::seconds(r.Int("IDEMPOTENCY_WINDOW", relay.idempotency_window.count(), 1, 366LL * 86'400));
    relay.stall_after = std::chrono::seconds(r.Int("RELAY_STALL_SECONDS", relay.stall_after.count(), 1, 86'400));
    relay.metrics_listen = r.String("METRICS_LISTEN", relay.metrics_listen);

    c.http_host = r.String("HTTP_HOST", c.http_host);
    c.http_port = static_cast<int>(r.Int("HTTP_PORT", c.http_port, 1, 65535));
    c.sentry_dsn = r.String("SENTRY_CONFIG_DSN", "");
    c.sentry_environment = r.String("SENTRY_CONFIG_ENVIRONMENT", c.environment);
    c.otel_endpoint = r.String("OTEL_EXPORTER_OTLP_ENDPOINT", "");
    return c;
}

}  // namespace eventlog
