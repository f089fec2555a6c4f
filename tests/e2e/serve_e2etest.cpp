// `eventlog serve` and `eventlog apikey` as processes: SECRET_KEY fails closed, a token printed once by the CLI
// authenticates requests to the binary until it is revoked, and the stop: the first SIGTERM lets the request in
// flight answer and exits 0, a second signal exits at once.

#include "e2e_support.hpp"
#include "support/http_client.hpp"

namespace eventlog::e2e {
namespace {

using namespace std::chrono_literals;

constexpr const char* kSecret = "e2e-serve-secret-8b2d4f6a1c3e5b7d9f0a2c4e6b8d1f3a5c7e9b0d2f4a6c8e1b3d5f7a";

class Serve : public E2eTest {
protected:
    /// Starts `eventlog serve` on a free port and waits until it listens.
    Child StartServe() {
        port_ = FreeLoopbackPort();
        log_ = world_->LogDir() + "/serve.log";
        Child child =
            Child::Spawn("serve", {EVENTLOG_BINARY, "serve", "--listen", "127.0.0.1:" + std::to_string(port_)},
                         world_->ChildEnv({{"SECRET_KEY", kSecret}, {"DATABASE_URL", world_->ProducerDsn()}}), log_);
        EXPECT_TRUE(WaitFor([&] { return CountInFile(log_, "http_listening") > 0 || !child.Running(); }, 30s));
        return child;
    }

    /// Creates a key through the CLI and returns the token (the last line of its output).
    std::string CreateKey(const std::string& name, const std::vector<std::string>& more = {}) {
        std::vector<std::string> args = {"apikey", "create", "--name", name};
        args.insert(args.end(), more.begin(), more.end());
        const auto created = world_->Eventlog(args, {{"SECRET_KEY", kSecret}, {"DATABASE_URL", world_->Dsn()}}, 30s);
        EXPECT_TRUE(created.Ok()) << created.output;
        EXPECT_EQ(created.output.find(kSecret), std::string::npos);
        const auto lines = SplitLines(created.output);
        return lines.empty() ? std::string() : lines.back();
    }

    testing::HttpAnswer PostEvent(const std::string& token) {
        return testing::HttpRequest(port_, "POST", "/api/v1/events", R"({"event_type":"e2e","event_context":{}})",
                                    {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}});
    }

    std::uint16_t port_{0};
    std::string log_;
};

TEST_F(Serve, ServeAndApikeyCreateRefuseToStartWithoutSecretKey) {
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"serve", "--listen", "127.0.0.1:0"}, {"apikey", "create", "--name", "x"}}) {
        const auto result = world_->Eventlog(args, {{"SECRET_KEY", ""}}, 30s);
        ASSERT_GE(result.status, 0) << args[0] << " did not exit";
        EXPECT_TRUE(WIFEXITED(result.status) && WEXITSTATUS(result.status) == 2) << DescribeStatus(result.status);
        EXPECT_NE(result.output.find("SECRET_KEY"), std::string::npos) << result.output;
    }
}

// Issue 20: a command that cannot reach PostgreSQL prints libpq's message as the lines it is (not with "\n\t"
// escaped), and with no connection variable set says so and where the default points.
TEST_F(Serve, ACommandWithoutAReachableDatabaseSaysWhatItTriedInPlainLines) {
    const auto result = world_->Eventlog({"status"}, {{"DATABASE_URL", ""}, {"POSTGRES_PORT", ""}}, 30s);
    ASSERT_GE(result.status, 0);
    EXPECT_FALSE(result.Ok()) << result.output;
    EXPECT_EQ(result.output.rfind("error: postgresql: ", 0), 0u) << result.output;
    EXPECT_EQ(result.output.find("\\n"), std::string::npos) << result.output;
    EXPECT_EQ(result.output.find("\\t"), std::string::npos) << result.output;
    EXPECT_NE(result.output.find("\n  no DATABASE_URL or POSTGRES_* variable is set"), std::string::npos)
        << result.output;
    EXPECT_NE(result.output.find("5432"), std::string::npos) << result.output;
}

TEST_F(Serve, ATokenFromTheCliWorksUntilRevokedAndSigtermStopsCleanly) {
    const std::string token = CreateKey("e2e");
    ASSERT_EQ(token.rfind("elk_", 0), 0u) << token;
    Child serve = StartServe();
    ASSERT_TRUE(serve.Running()) << ReadFile(log_);
    EXPECT_EQ(PostEvent(token).status, 202);
    const auto list = world_->Eventlog({"apikey", "list"}, {{"DATABASE_URL", world_->Dsn()}}, 30s);
    EXPECT_NE(list.output.find("active"), std::string::npos) << list.output;
    EXPECT_EQ(list.output.find(token), std::string::npos);
    ASSERT_TRUE(world_->Eventlog({"apikey", "revoke", "e2e"}, {{"DATABASE_URL", world_->Dsn()}}, 30s).Ok());
    EXPECT_EQ(PostEvent(token).status, 401);
    EXPECT_EQ(ReadFile(log_).find(token.substr(4)), std::string::npos) << "a token reached the log";
    // A narrow key from the CLI (issue 20): listed with its scope, refused on a route it lacks.
    const std::string reader = CreateKey("reader", {"--scope", "events:read"});
    ASSERT_EQ(reader.rfind("elk_", 0), 0u) << reader;
    EXPECT_EQ(PostEvent(reader).status, 403);
    const auto listed = world_->Eventlog({"apikey", "list"}, {{"DATABASE_URL", world_->Dsn()}}, 30s);
    EXPECT_NE(listed.output.find("scopes=events:read\n"), std::string::npos) << listed.output;
    EXPECT_NE(listed.output.find("scopes=events:write,events:read,users:write"), std::string::npos) << listed.output;
    EXPECT_FALSE(world_
                     ->Eventlog({"apikey", "create", "--name", "bad", "--scope", "events:delete"},
                                {{"SECRET_KEY", kSecret}, {"DATABASE_URL", world_->Dsn()}}, 30s)
                     .Ok());

    serve.Signal(SIGTERM);
    const auto status = serve.Wait(30s);
    ASSERT_TRUE(status) << "serve did not stop";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(*status);
    EXPECT_GT(CountInFile(log_, "http_stopped"), 0);
}

TEST_F(Serve, TheFirstSignalWaitsForTheRequestInFlightAndASecondExitsAtOnce) {
    const std::string token = CreateKey("e2e");
    Child serve = StartServe();
    auto locker = OpenPg(world_->Dsn());
    locker.Exec("BEGIN");
    locker.Exec("LOCK TABLE eventlog_demo.users IN ACCESS EXCLUSIVE MODE");
    testing::HttpAnswer answer;
    std::thread client([&] {
        answer = testing::HttpRequest(port_, "POST", "/api/v1/users", R"({"email":"e2e@example.com"})",
                                      {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + token}});
    });
    auto admin = OpenPg(world_->Dsn());
    ASSERT_TRUE(WaitFor(
        [&] {
            return admin
                       .Exec(
                           "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventlog-serve' AND "
                           "wait_event_type = 'Lock'")
                       .GetInt(0, 0) == 1;
        },
        30s));
    serve.Signal(SIGTERM);
    ASSERT_TRUE(WaitFor([&] { return CountInFile(log_, "serve_stopping") > 0; }, 30s));
    EXPECT_FALSE(serve.Wait(500ms)) << "exited with a request in flight";
    serve.Signal(SIGTERM);
    const auto status = serve.Wait(10s);
    ASSERT_TRUE(status) << "a second signal did not exit at once";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 130) << DescribeStatus(*status);
    locker.Exec("ROLLBACK");
    client.join();
    EXPECT_EQ(answer.status, 0) << "the abandoned request got an answer";
}

}  // namespace
}  // namespace eventlog::e2e
