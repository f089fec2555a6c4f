#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <observability/detail/http_post.hpp>
#include <string_view>

namespace eventlog::observability::detail {
namespace {

using CurlHandle = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;
using HeaderList = std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)>;

struct Sink {
    std::string* body;
    std::size_t cap;
};

std::size_t WriteBody(char* data, std::size_t size, std::size_t count, void* user) {
    auto* sink = static_cast<Sink*>(user);
    const std::size_t n = size * count;
    if (sink->body->size() < sink->cap) sink->body->append(data, std::min(n, sink->cap - sink->body->size()));
    return n;
}

std::string Trimmed(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return std::string(s);
}

bool HeaderIs(std::string_view line, std::string_view name) {
    if (line.size() <= name.size() || line[name.size()] != ':') return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(line[i])) != name[i]) return false;
    }
    return true;
}

std::size_t ReadHeader(char* data, std::size_t size, std::size_t count, void* user) {
    auto* response = static_cast<HttpResponse*>(user);
    const std::size_t n = size * count;
    const std::string_view line(data, n);
    if (HeaderIs(line, "retry-after")) response->retry_after = Trimmed(line.substr(12));
    if (HeaderIs(line, "x-sentry-rate-limits")) response->rate_limits = Trimmed(line.substr(21));
    return n;
}

}  // namespace

struct HttpClient::Impl {
    CurlHandle curl{nullptr, &curl_easy_cleanup};
};

HttpClient::HttpClient() : impl_(std::make_unique<Impl>()) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}
HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

HttpResponse HttpClient::Post(const HttpRequest& request) {
    HttpResponse response;
    if (!impl_->curl) impl_->curl.reset(curl_easy_init());
    CURL* c = impl_->curl.get();
    if (c == nullptr) {
        response.error = "curl_easy_init failed";
        return response;
    }
    curl_easy_reset(c);
    curl_slist* raw = nullptr;
    for (const std::string& h : request.headers) {
        curl_slist* next = curl_slist_append(raw, h.c_str());
        if (next == nullptr) {
            curl_slist_free_all(raw);
            response.error = "out of memory";
            return response;
        }
        raw = next;
    }
    // An empty Expect header: curl would otherwise wait for "100 Continue" on bodies over 1 KiB.
    if (curl_slist* next = curl_slist_append(raw, "Expect:"); next != nullptr) raw = next;
    const HeaderList headers(raw, &curl_slist_free_all);
    Sink sink{&response.body, request.max_response_bytes};
    char error[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(request.connect_timeout.count()));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &WriteBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &ReadHeader);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &response);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    const CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        response.status = 0;
        response.error = error[0] != '\0' ? error : curl_easy_strerror(rc);
        // A failed exchange may leave the connection in an unknown state: start afresh next time.
        impl_->curl.reset();
        return response;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
    return response;
}

}  // namespace eventlog::observability::detail
