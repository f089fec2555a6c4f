#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <eventlog/http/api.hpp>
#include <eventlog/http/server.hpp>
#include <fstream>
#include <iterator>

namespace eventlog::http {
namespace {

using ::testing::ElementsAre;

class Fixed : public Handler {
public:
    Response Handle(const Request&) override { return JsonResponse(200, "{}"); }
};

TEST(HttpRouterTest, FindsLiteralAndParameterRoutes) {
    Router router;
    auto events = std::make_shared<Fixed>();
    auto one = std::make_shared<Fixed>();
    router.Add("POST", "/api/v1/events", events);
    router.Add("GET", "/api/v1/events/{event_id}", one);
    const auto post = router.Find("POST", "/api/v1/events");
    EXPECT_EQ(post.status, 200);
    EXPECT_EQ(post.handler, events);
    const auto get = router.Find("GET", "/api/v1/events/5f0c8f3e-58c7-4b4c-9a59-1f1d1c7e2a10");
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(get.handler, one);
    EXPECT_EQ(get.params.at("event_id"), "5f0c8f3e-58c7-4b4c-9a59-1f1d1c7e2a10");
}

// (issue 20) Paths were matched after dropping empty segments, so `//metrics` and `/metrics/` reached /metrics past a
// proxy's exact-path rule (docs/observability.md tells operators to write one). Only the exact path matches now.
// Seen failing before the fix: both were 200.
TEST(HttpRouterTest, OnlyTheExactPathMatches) {
    Router router;
    router.Add("GET", "/metrics", std::make_shared<Fixed>());
    router.Add("GET", "/api/v1/events/{event_id}", std::make_shared<Fixed>());
    EXPECT_EQ(router.Find("GET", "/metrics").status, 200);
    for (const char* path : {"//metrics", "/metrics/", "/metrics//", "///metrics", "metrics", "/api//v1/events/x",
                             "/api/v1/events//x", "/api/v1/events/x/", ""}) {
        EXPECT_EQ(router.Find("GET", path).status, 404) << path;
    }
    EXPECT_EQ(router.Find("GET", "/api/v1/events/x").status, 200);
}

// The admin console's URLs end with a slash, as Django's: a pattern that ends with one matches only the path with it,
// and the API's patterns still match only without one.
TEST(HttpRouterTest, ATrailingSlashMatchesOnlyAPatternThatHasOne) {
    Router router;
    router.Add("GET", "/admin/login/", std::make_shared<Fixed>());
    router.Add("GET", "/admin/", std::make_shared<Fixed>());
    router.Add("GET", "/healthz", std::make_shared<Fixed>());
    EXPECT_EQ(router.Find("GET", "/admin/login/").status, 200);
    EXPECT_EQ(router.Find("GET", "/admin/login/").route, "/admin/login/");
    EXPECT_EQ(router.Find("GET", "/admin/").status, 200);
    for (const char* path : {"/admin/login", "/admin", "/admin//", "/admin//login/", "/healthz/", "//admin/"}) {
        EXPECT_EQ(router.Find("GET", path).status, 404) << path;
    }
    EXPECT_EQ(router.Find("GET", "/healthz").status, 200);
}

TEST(HttpRouterTest, AnUnknownPathIs404AndAKnownPathWithAnotherMethodIs405WithTheAllowedOnes) {
    Router router;
    router.Add("POST", "/api/v1/events", std::make_shared<Fixed>());
    router.Add("GET", "/healthz", std::make_shared<Fixed>());
    EXPECT_EQ(router.Find("GET", "/nope").status, 404);
    EXPECT_EQ(router.Find("GET", "/api/v1/events/x/y").status, 404);
    const auto wrong = router.Find("DELETE", "/api/v1/events");
    EXPECT_EQ(wrong.status, 405);
    EXPECT_THAT(wrong.allow, ElementsAre("POST"));
    EXPECT_EQ(wrong.handler, nullptr);
}

TEST(HttpRouterTest, AnEmptyParameterSegmentDoesNotMatch) {
    Router router;
    router.Add("GET", "/api/v1/events/{event_id}", std::make_shared<Fixed>());
    EXPECT_EQ(router.Find("GET", "/api/v1/events/").status, 404);
}

TEST(HttpRouterTest, ProblemsBecomeJsonWithFieldIndexOffsetAndHeaders) {
    Problem p;
    p.status = 400;
    p.error = "expected a \"UUID\"";
    p.field = "event_id";
    p.index = 3;
    const auto r = ToResponse(p);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.body, R"({"error":"expected a \"UUID\"","field":"event_id","index":3})");
    Problem busy;
    busy.status = 503;
    busy.error = "busy";
    busy.retry_after = 1;
    EXPECT_THAT(ToResponse(busy).headers, ElementsAre(std::make_pair(std::string("Retry-After"), std::string("1"))));
}

TEST(HttpRouterTest, MediaTypeIgnoresParametersAndCase) {
    Request r;
    r.headers["content-type"] = "Application/JSON; charset=utf-8";
    EXPECT_EQ(r.MediaType(), "application/json");
    r.headers.clear();
    EXPECT_EQ(r.MediaType(), "");
}

TEST(HttpListenTest, ParsesHostAndPortAndRefusesTheRest) {
    ServerOptions o;
    ParseListen("0.0.0.0:9000", "HTTP_LISTEN", o);
    EXPECT_EQ(o.host, "0.0.0.0");
    EXPECT_EQ(o.port, 9000);
    ParseListen("[::1]:8080", "HTTP_LISTEN", o);
    EXPECT_EQ(o.host, "::1");
    EXPECT_EQ(o.port, 8080);
    ParseListen("localhost:1", "--listen", o);
    EXPECT_EQ(o.host, "127.0.0.1");
    for (const char* bad : {"8000", ":8000", "host:", "host:70000", "host:8x", "[::1]8000"}) {
        EXPECT_THROW(ParseListen(bad, "HTTP_LISTEN", o), ConfigError) << bad;
    }
}

TEST(HttpSettingsTest, AnEmptySecretKeyIsRefusedNamingTheVariableNotTheValue) {
    Config config;
    try {
        LoadServeSettings({}, config);
        FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), ::testing::StartsWith("SECRET_KEY:"));
    }
    // Issue 20: a weak key is refused too, by name and never by value.
    for (const char* weak : {"s3cr3t-value", "correct horse battery staple",
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                             "0123456789abcdef0123456789abcdef"}) {  // 32 hex digits: 16 bytes
        config.secret_key = weak;
        try {
            LoadServeSettings({}, config);
            ADD_FAILURE() << "a weak SECRET_KEY was accepted: " << weak;
        } catch (const ConfigError& e) {
            EXPECT_THAT(e.what(), ::testing::HasSubstr("SECRET_KEY: expected at least 32 bytes of entropy"));
            EXPECT_THAT(e.what(), ::testing::Not(::testing::HasSubstr(weak)));
        }
    }
    config.secret_key = "s3cr3t-value-4f1c9a0b7e2d8c6f5a3b1e9d7c5a3f1b2e4d6c8a0f9e7d5c3b1a2f4e6d8c0b9a7f5e3d1";
    const auto s = LoadServeSettings({{"HTTP_LISTEN", "127.0.0.1:0"}, {"HTTP_MAX_BODY_BYTES", "2048"}}, config);
    EXPECT_EQ(s.server.port, 0);
    EXPECT_EQ(s.server.max_body_bytes, 2048u);
    try {
        LoadServeSettings({{"HTTP_MAX_EVENTS", "0"}}, config);
        FAIL() << "expected ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_THAT(e.what(), ::testing::StartsWith("HTTP_MAX_EVENTS:"));
        EXPECT_THAT(e.what(), ::testing::Not(::testing::HasSubstr("s3cr3t")));
    }
    // 64 hexadecimal digits (openssl rand -hex 32) and 43 base64url characters (32 random bytes) pass.
    for (const char* strong : {"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                               "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg"}) {
        config.secret_key = strong;
        EXPECT_NO_THROW(LoadServeSettings({}, config)) << strong;
    }
}

TEST(HttpSettingsTest, TheExampleFileGivesTheDefaults) {
    std::string source = __FILE__;
    source = source.substr(0, source.rfind("/tests/unit/"));
    std::ifstream file(source + "/.env.example");
    ASSERT_TRUE(file) << source << "/.env.example";
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    EnvMap env = ParseDotenv(text);
    env["SECRET_KEY"] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const auto s = LoadServeSettings(env, LoadConfig(env));
    const ServeSettings defaults;
    EXPECT_EQ(s.server.host, "127.0.0.1");
    EXPECT_EQ(s.server.port, 8000);
    EXPECT_EQ(s.server.allowed_hosts, (std::vector<std::string>{"localhost", "127.0.0.1"}));
    EXPECT_EQ(s.server.max_body_bytes, defaults.server.max_body_bytes);
    EXPECT_EQ(s.server.max_connections, defaults.server.max_connections);
    EXPECT_EQ(s.server.worker_threads, defaults.server.worker_threads);
    EXPECT_EQ(s.server.header_timeout, defaults.server.header_timeout);
    EXPECT_EQ(s.server.body_timeout, defaults.server.body_timeout);
    EXPECT_EQ(s.pool_size, defaults.pool_size);
    EXPECT_EQ(s.acquire_timeout, defaults.acquire_timeout);
    EXPECT_EQ(s.events.max_events, defaults.events.max_events);
    EXPECT_EQ(s.events.max_context_bytes, defaults.events.max_context_bytes);
    EXPECT_EQ(s.group_commit_window, defaults.group_commit_window);
    EXPECT_EQ(s.group_commit_groups, defaults.group_commit_groups);
}

}  // namespace
}  // namespace eventlog::http
