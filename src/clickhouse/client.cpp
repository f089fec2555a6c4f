#include <curl/curl.h>

#include <algorithm>
#include <cstdlib>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/clickhouse/errors.hpp>
#include <eventlog/core/config.hpp>
#include <eventlog/core/error.hpp>
#include <limits>
#include <mutex>
#include <optional>
#include <string>

namespace eventlog::clickhouse {

namespace {

constexpr std::size_t kMaxServerTextInMessage = 2000;
constexpr std::size_t kMaxSqlInMessage = 160;

void GlobalInitOnce() {
    static std::once_flag flag;
    std::call_once(flag, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string_view Trim(std::string_view text) {
    const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

std::string Shorten(std::string_view text, std::size_t limit) {
    text = Trim(text);
    if (text.size() <= limit) return std::string(text);
    return std::string(text.substr(0, limit)) + "...";
}

// Removes "user:password@" from a URL so it can appear in messages.
std::string RedactUrl(std::string_view url) {
    std::string_view rest = url;
    std::string prefix;
    if (auto scheme = url.find("://"); scheme != std::string_view::npos) {
        prefix = std::string(url.substr(0, scheme + 3));
        rest = url.substr(scheme + 3);
    }
    const auto authority_end = std::min(rest.find('/'), rest.size());
    const auto at = rest.substr(0, authority_end).rfind('@');
    if (at != std::string_view::npos) rest = rest.substr(at + 1);
    return prefix + std::string(rest);
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// Undoes TabSeparated escaping (\t \n \\ \' and friends).
std::string UnescapeTsv(std::string_view field) {
    std::string out;
    out.reserve(field.size());
    for (std::size_t i = 0; i < field.size(); ++i) {
        if (field[i] != '\\' || i + 1 == field.size()) {
            out.push_back(field[i]);
            continue;
        }
        const char c = field[++i];
        switch (c) {
            case 'b':
                out.push_back('\b');
                break;
            case 'f':
                out.push_back('\f');
                break;
            case 'r':
                out.push_back('\r');
                break;
            case 'n':
                out.push_back('\n');
                break;
            case 't':
                out.push_back('\t');
                break;
            case '0':
                out.push_back('\0');
                break;
            default:
                out.push_back(c);
                break;
        }
    }
    return out;
}

/// Where WriteBody collects a response body, up to `limit` bytes.
struct BodySink {
    std::string body;
    std::size_t limit{0};
    bool exceeded{false};
};

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
    auto* sink = static_cast<BodySink*>(user);
    const std::size_t n = size * count;
    if (n > sink->limit - std::min(sink->limit, sink->body.size())) {
        sink->exceeded = true;
        return 0;  // libcurl aborts the transfer with CURLE_WRITE_ERROR; nothing more is read
    }
    sink->body.append(data, n);
    return n;
}

struct ResponseHeaders {
    std::optional<int> exception_code;
};

size_t WriteHeader(char* data, size_t size, size_t count, void* user) {
    const std::string_view line(data, size * count);
    const auto colon = line.find(':');
    if (colon != std::string_view::npos && EqualsIgnoreCase(line.substr(0, colon), "X-ClickHouse-Exception-Code")) {
        const std::string value(Trim(line.substr(colon + 1)));
        char* end = nullptr;
        const long code = std::strtol(value.c_str(), &end, 10);
        if (end != value.c_str()) static_cast<ResponseHeaders*>(user)->exception_code = static_cast<int>(code);
    }
    return size * count;
}

}  // namespace

bool ServerVersion::AtLeast(int maj, int min) const { return major > maj || (major == maj && minor >= min); }

ServerVersion ParseServerVersion(std::string_view text) {
    ServerVersion version;
    version.text = std::string(Trim(text));
    int* parts[] = {&version.major, &version.minor, &version.patch};
    std::size_t part = 0;
    for (char c : version.text) {
        if (c >= '0' && c <= '9') {
            int& value = *parts[part];
            const int digit = c - '0';
            constexpr int kMax = std::numeric_limits<int>::max();
            value = value > (kMax - digit) / 10 ? kMax : value * 10 + digit;
        } else if (c == '.') {
            if (++part == 3) break;
        } else {
            break;
        }
    }
    return version;
}

struct Client::Impl {
    ClientOptions options;
    std::string display_url;
    std::string root_url;  // base_url without trailing '/'
    CURL* curl{nullptr};
    curl_slist* headers{nullptr};
    std::optional<ServerVersion> version;
    std::optional<bool> views_cascade;  // ViewsCascade(), probed once

    explicit Impl(ClientOptions opts) : options(std::move(opts)) {
        GlobalInitOnce();
        root_url = options.base_url;
        while (!root_url.empty() && root_url.back() == '/') root_url.pop_back();
        display_url = RedactUrl(root_url);
        curl = curl_easy_init();
        if (curl == nullptr) throw Error(ErrorKind::kFatal, "ClickHouse " + display_url + ": curl_easy_init failed");
        const std::string user_header = "X-ClickHouse-User: " + options.user;
        headers = curl_slist_append(headers, user_header.c_str());
        if (!options.password.empty()) {
            const std::string key_header = "X-ClickHouse-Key: " + options.password;
            headers = curl_slist_append(headers, key_header.c_str());
        }
        headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
        headers = curl_slist_append(headers, "Expect:");
        const long connect_ms = static_cast<long>(options.connect_timeout.count());
        const long total_ms = static_cast<long>((options.connect_timeout + options.send_receive_timeout).count());
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, total_ms);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteBody);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &WriteHeader);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        // https: the certificate chain and the host name are always verified (libcurl's defaults, set explicitly
        // so that no build or environment can turn them off).
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
        if (!options.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
    }

    ~Impl() {
        if (curl != nullptr) curl_easy_cleanup(curl);
        if (headers != nullptr) curl_slist_free_all(headers);
    }

    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    std::string Escape(std::string_view value) const {
        char* escaped = curl_easy_escape(curl, value.data(), static_cast<int>(value.size()));
        if (escaped == nullptr)
            throw Error(ErrorKind::kFatal, "ClickHouse " + display_url + ": curl_easy_escape failed");
        std::string result(escaped);
        curl_free(escaped);
        return result;
    }

    std::string QueryUrl(const std::vector<std::pair<std::string, std::string>>& params) const {
        std::string url = root_url + "/?database=" + Escape(options.database);
        for (const auto& [key, value] : params) url += "&" + Escape(key) + "=" + Escape(value);
        return url;
    }

    // Performs one request and returns the body of a 200 response; throws a classified Error otherwise.
    // `body` == nullptr means GET. `what` describes the request for messages.
    std::string Perform(const std::string& url, const std::string_view* body, bool is_insert,
                        const std::string& what) const {
        BodySink sink;
        sink.limit = options.max_response_bytes;
        ResponseHeaders response_headers;
        char error_buffer[CURL_ERROR_SIZE] = {0};
        curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response_headers);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
        if (body == nullptr) {
            curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
        } else {
            curl_easy_setopt(curl, CURLOPT_POST, 1L);
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
        }
        const bool fresh = is_insert && options.insert_on_fresh_connection;
        curl_easy_setopt(curl, CURLOPT_FRESH_CONNECT, fresh ? 1L : 0L);
        curl_easy_setopt(curl, CURLOPT_FORBID_REUSE, fresh ? 1L : 0L);
        const CURLcode rc = curl_easy_perform(curl);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
        const std::string where = "ClickHouse " + display_url + " (" + what + "): ";
        if (sink.exceeded) {
            const std::string message = where + "response larger than " + std::to_string(options.max_response_bytes) +
                                        " bytes (max_response_bytes), abandoned";
            // The server may have inserted the rows before answering.
            if (is_insert) throw InDoubtError(message);
            throw ConfigError(message, true);
        }
        if (rc != CURLE_OK) {
            std::string detail = error_buffer[0] != '\0' ? std::string(error_buffer) : curl_easy_strerror(rc);
            // Never echo credentials a URL may carry.
            if (!options.password.empty()) {
                for (auto pos = detail.find(options.password); pos != std::string::npos;
                     pos = detail.find(options.password)) {
                    detail.replace(pos, options.password.size(), "***");
                }
            }
            switch (rc) {
                case CURLE_UNSUPPORTED_PROTOCOL:
                case CURLE_URL_MALFORMAT:
                case CURLE_PEER_FAILED_VERIFICATION:
                case CURLE_SSL_CACERT_BADFILE:
                case CURLE_SSL_CERTPROBLEM:
                    throw ConfigError(where + "bad URL or TLS setup: " + detail, true);
                case CURLE_COULDNT_RESOLVE_HOST:
                case CURLE_COULDNT_RESOLVE_PROXY:
                case CURLE_COULDNT_CONNECT:
                    throw TransientError(where + "cannot connect: " + detail);
                default:
                    break;
            }
            curl_off_t uploaded = 0;
            curl_easy_getinfo(curl, CURLINFO_SIZE_UPLOAD_T, &uploaded);
            // Once any byte of the RowBinary body left, the server may have inserted the rows.
            if (is_insert && uploaded > 0) {
                throw InDoubtError(where + "insert outcome unknown, " + std::to_string(uploaded) + " of " +
                                   std::to_string(body->size()) + " body bytes sent: " + detail);
            }
            throw TransientError(where + detail);
        }
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        std::string& response = sink.body;
        if (status == 200 && !response_headers.exception_code) return std::move(response);

        std::optional<int> code = response_headers.exception_code;
        if (!code) code = ParseServerErrorCode(response);
        const std::string server_text = Shorten(response, kMaxServerTextInMessage);
        const std::string http = "HTTP " + std::to_string(status);
        if (code) {
            const ErrorKind kind = ClassifyServerError(*code, is_insert);
            std::string name(ServerErrorName(*code));
            std::string prefix;
            if (IsAuthenticationError(*code)) {
                prefix = "authentication failed for user '" + options.user + "': ";
            } else if (kind == ErrorKind::kInDoubt) {
                prefix = "insert outcome unknown: ";
            }
            ThrowError(kind, where + prefix + http + (name.empty() ? "" : " " + name) + ": " + server_text,
                       std::to_string(*code));
        }
        if (status == 401 || status == 403) {
            throw ConfigError(where + "authentication failed for user '" + options.user + "': " + http + ": " +
                              server_text);
        }
        if (status >= 500 && is_insert) {
            ThrowError(ErrorKind::kInDoubt, where + "insert outcome unknown: " + http + ": " + server_text, http);
        }
        ThrowError(ErrorKind::kTransient, where + http + ": " + server_text, http);
    }
};

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

void Client::Ping() {
    const std::string body = impl_->Perform(impl_->root_url + "/ping", nullptr, false, "ping");
    if (Trim(body) != "Ok.") {
        throw TransientError("ClickHouse " + impl_->display_url +
                             " (ping): unexpected answer: " + Shorten(body, kMaxServerTextInMessage));
    }
}

std::string Client::Query(std::string_view sql, const std::vector<std::pair<std::string, std::string>>& settings) {
    std::vector<std::pair<std::string, std::string>> params;
    // Buffer the result server-side so an exception mid-query arrives as an HTTP error, not a truncated 200.
    params.emplace_back("wait_end_of_query", "1");
    params.insert(params.end(), settings.begin(), settings.end());
    return impl_->Perform(impl_->QueryUrl(params), &sql, false, "query " + Shorten(sql, kMaxSqlInMessage));
}

void Client::Execute(std::string_view sql) { Query(sql); }

void Client::Insert(std::string_view table, std::string_view column_list, std::string_view rowbinary,
                    const InsertOptions& options) {
    const std::string target = QuoteIdentifier(impl_->options.database) + "." + QuoteIdentifier(table);
    std::vector<std::pair<std::string, std::string>> params;
    params.emplace_back("query", "INSERT INTO " + target + " " + std::string(column_list) + " FORMAT RowBinary");
    if (!options.query_id.empty()) params.emplace_back("query_id", options.query_id);
    if (!options.deduplication_token.empty()) {
        params.emplace_back("insert_deduplication_token", options.deduplication_token);
    }
    if (options.insert_quorum > 0) params.emplace_back("insert_quorum", std::to_string(options.insert_quorum));
    impl_->Perform(impl_->QueryUrl(params), &rowbinary, true, "insert into " + target);
}

ServerVersion Client::Version() {
    if (!impl_->version) {
        impl_->version = ParseServerVersion(Query("SELECT version() FORMAT TabSeparated"));
    }
    return *impl_->version;
}

std::vector<Column> Client::DescribeTable(std::string_view database, std::string_view table) {
    const std::string sql =
        "SELECT name, type, default_kind FROM system.columns WHERE database = " + QuoteString(database) +
        " AND table = " + QuoteString(table) + " FORMAT TabSeparated";
    const std::string body = Query(sql);
    std::vector<Column> columns;
    std::string_view rest = body;
    while (!rest.empty()) {
        const auto eol = std::min(rest.find('\n'), rest.size());
        const std::string_view line = rest.substr(0, eol);
        rest.remove_prefix(std::min(eol + 1, rest.size()));
        if (line.empty()) continue;
        const auto tab1 = line.find('\t');
        const auto tab2 = tab1 == std::string_view::npos ? tab1 : line.find('\t', tab1 + 1);
        if (tab2 == std::string_view::npos) {
            throw TransientError("ClickHouse " + impl_->display_url +
                                 ": unexpected system.columns row: " + Shorten(line, kMaxServerTextInMessage));
        }
        columns.push_back(Column{UnescapeTsv(line.substr(0, tab1)), UnescapeTsv(line.substr(tab1 + 1, tab2 - tab1 - 1)),
                                 UnescapeTsv(line.substr(tab2 + 1))});
    }
    if (columns.empty()) {
        throw ConfigError("ClickHouse " + impl_->display_url + ": table " + QuoteIdentifier(database) + "." +
                          QuoteIdentifier(table) + " does not exist (no columns in system.columns)");
    }
    return columns;
}

bool Client::SupportsDeduplicationToken() { return Version().AtLeast(22, 2); }

bool Client::SupportsDateTime64() { return Version().AtLeast(20, 1); }

std::vector<std::string> Client::DependentViews(std::string_view database, std::string_view table) {
    const std::string body = Query(
        "SELECT arrayStringConcat(arrayMap((d, t) -> concat(d, '.', t), dependencies_database, dependencies_table), "
        "'\\n') FROM system.tables WHERE database = " +
        QuoteString(database) + " AND name = " + QuoteString(table) + " FORMAT TabSeparatedRaw");
    std::vector<std::string> views;
    std::size_t start = 0;
    while (start < body.size()) {
        const std::size_t end = std::min(body.find('\n', start), body.size());
        if (end > start) views.emplace_back(body.substr(start, end - start));
        start = end + 1;
    }
    return views;
}

bool Client::ViewsCascade(std::string_view database, std::string_view probe_prefix) {
    if (impl_->views_cascade) return *impl_->views_cascade;
    const std::string db = QuoteIdentifier(database);
    const auto name = [&](const char* suffix) {
        return db + "." + QuoteIdentifier(std::string(probe_prefix) + suffix);
    };
    const auto drop_all = [&] {
        for (const char* suffix : {"_cnt", "_fwd", "_dst", "_src"}) Execute("DROP TABLE IF EXISTS " + name(suffix));
    };
    drop_all();
    try {
        Execute("CREATE TABLE " + name("_src") + " (x UInt8) ENGINE = Null");
        Execute("CREATE TABLE " + name("_dst") + " (x UInt8) ENGINE = Memory");
        Execute("CREATE MATERIALIZED VIEW " + name("_fwd") + " TO " + name("_dst") + " AS SELECT x FROM " +
                name("_src"));
        Execute("CREATE MATERIALIZED VIEW " + name("_cnt") + " ENGINE = Memory AS SELECT x FROM " + name("_dst"));
        Execute("INSERT INTO " + name("_src") + " VALUES (1)");
        const std::string count = Query("SELECT count() FROM " + name("_cnt") + " FORMAT TabSeparatedRaw");
        impl_->views_cascade = count.rfind('1', 0) == 0;
    } catch (...) {
        try {
            drop_all();
        } catch (const Error&) {
        }
        throw;
    }
    drop_all();
    return *impl_->views_cascade;
}

const ClientOptions& Client::Options() const { return impl_->options; }

const std::string& Client::DisplayUrl() const { return impl_->display_url; }

std::string QuoteIdentifier(std::string_view name) {
    std::string out;
    out.reserve(name.size() + 2);
    out.push_back('`');
    for (char c : name) {
        if (c == '`' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('`');
    return out;
}

std::string QuoteString(std::string_view value) {
    std::string out;
    out.reserve(value.size() + 2);
    out.push_back('\'');
    for (char c : value) {
        switch (c) {
            case '\'':
                out += "\\'";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\0':
                out += "\\0";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                out.push_back(c);
                break;
        }
    }
    out.push_back('\'');
    return out;
}

ClientOptions OptionsFrom(const ClickHouseConfig& config) {
    ClientOptions options;
    options.base_url = config.BaseUrl();
    options.user = config.user;
    options.password = config.password;
    options.database = config.database;
    options.connect_timeout = config.connect_timeout;
    options.send_receive_timeout = config.send_receive_timeout;
    options.ca_file = config.ca_file;
    return options;
}

}  // namespace eventlog::clickhouse
