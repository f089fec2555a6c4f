#pragma once

// Helpers for the end-to-end tests (tests/e2e/*_e2etest.cpp): the `eventlog` binary runs as real child
// processes with their own environment; the tests kill them (SIGKILL, fault points), kill, freeze and restart
// the servers, and check the exactly-once guarantee in ClickHouse afterwards.
//
// Servers come from the environment (never defaults; a missing variable FAILS the test):
//   EVENTLOG_TEST_PG_DSN     postgres://eventlog:eventlog@127.0.0.1:PORT/eventlog   (a SUPERUSER role)
//   EVENTLOG_TEST_CH_URL     http://127.0.0.1:PORT
//   EVENTLOG_TEST_STACK_DIR  absolute path of the scripts/stack.sh directory of those servers (restarts)
// Optional: EVENTLOG_E2E_SEED (reproduce a run's random choices), EVENTLOG_E2E_LOG_DIR (where child logs go;
// default <source>/.local/e2e-logs). The servers are restarted and killed: never point these tests at servers
// other tests use at the same time.
//
// Header-only on purpose: CMake compiles tests/e2e/*_e2etest.cpp only. Everything here is for one test thread,
// except Producer, which owns its own thread and connection.

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <eventlog/clickhouse/client.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/pg/connection.hpp>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "support/test_env.hpp"

extern char** environ;

namespace eventlog::e2e {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// A port that was free a moment ago on the loopback interface.
inline std::uint16_t FreeLoopbackPort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ::close(fd);
    return ntohs(address.sin_port);
}

inline std::string GetEnv(const char* name) {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
}

/// Integer from the environment, `fallback` when unset or not a number.
inline long EnvInt(const char* name, long fallback) {
    const std::string v = GetEnv(name);
    if (v.empty()) return fallback;
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    return (end && *end == '\0') ? n : fallback;
}

inline double SecondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

inline std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline std::vector<std::string> SplitLines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (!line.empty()) out.push_back(line);
    }
    return out;
}

inline std::string Tail(const std::string& text, std::size_t max_chars) {
    return text.size() <= max_chars ? text : "..." + text.substr(text.size() - max_chars);
}

/// Counts occurrences of `needle` in the file at `path`.
inline int CountInFile(const std::string& path, const std::string& needle) {
    const std::string text = ReadFile(path);
    int n = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + needle.size())) ++n;
    return n;
}

/// The value of `name` in a relay log line (a JSON object): a string field unescaped, a number as written;
/// "" when absent. Enough for the relay's own fields (event, owner, action, kind, code, point).
inline std::string JsonField(const std::string& line, const std::string& name) {
    const std::string key = "\"" + name + "\":";
    const auto at = line.find(key);
    if (at == std::string::npos) return {};
    auto pos = at + key.size();
    if (pos < line.size() && line[pos] == '"') {
        std::string out;
        for (++pos; pos < line.size() && line[pos] != '"'; ++pos) {
            if (line[pos] == '\\' && pos + 1 < line.size()) ++pos;
            out += line[pos];
        }
        return out;
    }
    const auto end = line.find_first_of(",}", pos);
    return line.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

/// One JSON line of a relay's log.
struct LogLine {
    std::string path;       ///< The log file.
    std::size_t offset{0};  ///< Byte offset of the line in that file.
    std::string timestamp;  ///< "2026-01-02T03:04:05.123456Z": sorts as text, one clock for all relays.
    std::string event;      ///< The "event" field.
    std::int64_t owner{0};  ///< Owner key of the session that wrote it (its last relay_connected; 0 before one).
    std::string text;       ///< The whole line.

    std::string Field(const std::string& name) const { return JsonField(text, name); }
    std::int64_t IntField(const std::string& name) const { return std::atoll(Field(name).c_str()); }
};

/// The complete JSON lines of a relay log at or after byte `from` (lines before it still set the owner).
inline std::vector<LogLine> ParseLog(const std::string& path, std::size_t from = 0) {
    const std::string text = ReadFile(path);
    std::vector<LogLine> out;
    std::int64_t owner = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        const auto end = text.find('\n', pos);
        if (end == std::string::npos) break;  // a line still being written
        if (text[pos] == '{') {
            LogLine l;
            l.path = path;
            l.offset = pos;
            l.text = text.substr(pos, end - pos);
            l.timestamp = JsonField(l.text, "timestamp");
            l.event = JsonField(l.text, "event");
            if (l.event == "relay_connected") owner = std::atoll(JsonField(l.text, "owner").c_str());
            l.owner = owner;
            if (pos >= from) out.push_back(std::move(l));
        }
        pos = end + 1;
    }
    return out;
}

/// The lines of `lines` with event `event` (and, when given, field `field` equal to `value`).
inline std::vector<LogLine> Select(const std::vector<LogLine>& lines, const std::string& event,
                                   const std::string& field = {}, const std::string& value = {}) {
    std::vector<LogLine> out;
    for (const auto& l : lines) {
        if (l.event == event && (field.empty() || l.Field(field) == value)) out.push_back(l);
    }
    return out;
}

/// Index of the first line at or after `from` with event `event` (and field == value), or -1.
inline long FindLine(const std::vector<LogLine>& lines, const std::string& event, std::size_t from = 0,
                     const std::string& field = {}, const std::string& value = {}) {
    for (std::size_t i = from; i < lines.size(); ++i) {
        if (lines[i].event == event && (field.empty() || lines[i].Field(field) == value)) return static_cast<long>(i);
    }
    return -1;
}

/// "event event ..." of the lines, for failure messages.
inline std::string EventList(const std::vector<LogLine>& lines) {
    std::string out;
    for (const auto& l : lines) out += (out.empty() ? "" : " ") + l.event;
    return out;
}

inline std::size_t FileSize(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<std::size_t>(st.st_size) : 0;
}

/// Polls `condition` every `step` until it holds or `timeout` passes; returns whether it held.
template <typename F>
bool WaitFor(F&& condition, milliseconds timeout, milliseconds step = milliseconds(20)) {
    const auto until = Clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (Clock::now() >= until) return false;
        std::this_thread::sleep_for(step);
    }
}

/// Describes a waitpid() status ("exit 0", "signal 9").
inline std::string DescribeStatus(int status) {
    if (WIFEXITED(status)) return fmt::format("exit {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
    return fmt::format("status {}", status);
}

/// A child process started with posix_spawn; stdout and stderr go to `log_path` (appended). Move-only.
/// The destructor SIGKILLs and reaps it if it still runs, so no test leaves a relay behind.
class Child {
public:
    Child() = default;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    Child(Child&& o) noexcept { *this = std::move(o); }
    Child& operator=(Child&& o) noexcept {
        if (this != &o) {
            Reap();
            pid_ = std::exchange(o.pid_, -1);
            status_ = o.status_;
            name_ = std::move(o.name_);
            log_path_ = std::move(o.log_path_);
            started_ = o.started_;
        }
        return *this;
    }
    ~Child() { Reap(); }

    static Child Spawn(std::string name, const std::vector<std::string>& args, const std::vector<std::string>& env,
                       const std::string& log_path) {
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        std::vector<char*> envp;
        for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
        envp.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none);
        sigset_t defaults;
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGTERM);
        sigaddset(&defaults, SIGINT);
        sigaddset(&defaults, SIGPIPE);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        Child c;
        c.name_ = std::move(name);
        c.log_path_ = log_path;
        c.started_ = Clock::now();
        pid_t pid = -1;
        const int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) throw std::runtime_error(fmt::format("posix_spawn {}: {}", args[0], std::strerror(rc)));
        c.pid_ = pid;
        return c;
    }

    pid_t Pid() const { return pid_; }
    const std::string& Name() const { return name_; }
    const std::string& LogPath() const { return log_path_; }
    double AgeSeconds() const { return SecondsSince(started_); }
    bool Valid() const { return pid_ > 0 || status_.has_value(); }

    /// True while the process has not exited (reaps it when it has).
    bool Running() {
        if (status_) return false;
        if (pid_ <= 0) return false;
        int st = 0;
        const pid_t r = ::waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            status_ = st;
            pid_ = -1;
            return false;
        }
        return true;
    }

    /// Waits up to `timeout` for the process to exit; returns its waitpid() status, or nullopt on timeout.
    std::optional<int> Wait(milliseconds timeout) {
        const auto until = Clock::now() + timeout;
        while (Running()) {
            if (Clock::now() >= until) return std::nullopt;
            std::this_thread::sleep_for(milliseconds(5));
        }
        return status_;
    }

    void Signal(int sig) {
        if (Running()) ::kill(pid_, sig);
    }

    /// SIGKILL and reap; returns the status (the process may have exited on its own before).
    int Kill() {
        Signal(SIGKILL);
        auto st = Wait(milliseconds(30'000));
        return st.value_or(-1);
    }

    std::optional<int> Status() const { return status_; }

private:
    void Reap() noexcept {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            int st = 0;
            ::waitpid(pid_, &st, 0);
            pid_ = -1;
        }
    }

    pid_t pid_{-1};
    std::optional<int> status_;
    std::string name_;
    std::string log_path_;
    Clock::time_point started_{};
};

/// Result of a command run to completion.
struct CommandResult {
    int status{-1};  ///< waitpid() status; -1 when it timed out (then it was killed).
    std::string output;
    bool Ok() const { return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

/// The process environment without the variables that configure eventlog, so a developer's shell or `.env`
/// cannot leak into a test's child processes.
inline std::vector<std::string> CleanEnvironment() {
    static const char* kDropped[] = {"DATABASE_URL",    "POSTGRES_",         "CLICKHOUSE_", "EVENT_",       "RELAY_",
                                     "EVENTLOG_FAULT_", "EVENTLOG_ENV_FILE", "LOG_LEVEL",   "ENVIRONMENT=", "DEBUG=",
                                     "LOG_FORMAT=",     "SENTRY_",           "OTEL_"};
    std::vector<std::string> out;
    for (char** e = environ; e && *e; ++e) {
        const std::string kv(*e);
        bool drop = false;
        for (const char* prefix : kDropped) drop = drop || kv.rfind(prefix, 0) == 0;
        if (!drop) out.push_back(kv);
    }
    return out;
}

/// Sets NAME=value in a "NAME=value" list (replacing an existing entry).
inline void SetVar(std::vector<std::string>& env, const std::string& name, const std::string& value) {
    const std::string prefix = name + "=";
    for (auto& kv : env) {
        if (kv.rfind(prefix, 0) == 0) {
            kv = prefix + value;
            return;
        }
    }
    env.push_back(prefix + value);
}

/// Runs `args` to completion (bounded by `timeout`, then SIGKILL); output collected through `log_path`.
inline CommandResult RunCommand(const std::vector<std::string>& args, const std::vector<std::string>& env,
                                const std::string& log_path, milliseconds timeout) {
    ::unlink(log_path.c_str());
    Child c = Child::Spawn(args[0], args, env, log_path);
    CommandResult r;
    auto st = c.Wait(timeout);
    if (!st) {
        c.Kill();
        r.status = -1;
    } else {
        r.status = *st;
    }
    r.output = ReadFile(log_path);
    return r;
}

/// The servers the test runs against, from the environment.
struct Servers {
    std::string pg_dsn;     ///< EVENTLOG_TEST_PG_DSN (admin database)
    std::string ch_url;     ///< EVENTLOG_TEST_CH_URL
    std::string stack_dir;  ///< EVENTLOG_TEST_STACK_DIR
    int pg_port{0};
    int ch_port{0};

    /// Reads the variables; returns an error message naming what is missing (empty when all are set).
    static std::string Load(Servers& out) {
        std::string missing;
        const auto need = [&](const char* name, const char* example) {
            std::string v = GetEnv(name);
            if (v.empty()) missing += fmt::format("\n  {} is not set (e.g. {})", name, example);
            return v;
        };
        out.pg_dsn = need("EVENTLOG_TEST_PG_DSN", "postgres://eventlog:eventlog@127.0.0.1:54340/eventlog");
        out.ch_url = need("EVENTLOG_TEST_CH_URL", "http://127.0.0.1:18140");
        out.stack_dir = need("EVENTLOG_TEST_STACK_DIR", "/work/main/.local/e2e (the scripts/stack.sh directory)");
        if (!missing.empty()) {
            return "the end-to-end tests need throwaway servers they may kill and restart; start them with "
                   "`scripts/stack.sh start DIR PG_PORT CH_PORT` (or run `make test`) and set:" +
                   missing;
        }
        out.pg_port = PortOf(out.pg_dsn);
        out.ch_port = PortOf(out.ch_url);
        if (out.pg_port == 0 || out.ch_port == 0) return "could not read the ports of EVENTLOG_TEST_PG_DSN / _CH_URL";
        if (out.stack_dir.front() != '/') return "EVENTLOG_TEST_STACK_DIR must be an absolute path";
        if (::access((out.stack_dir + "/ch/pid").c_str(), R_OK) != 0) {
            return "EVENTLOG_TEST_STACK_DIR=" + out.stack_dir + " has no ch/pid: is it the stack of these servers?";
        }
        return {};
    }

    /// "scheme://[user[:pw]@]host:PORT/..." -> PORT.
    static int PortOf(const std::string& url) {
        auto at = url.find("://");
        if (at == std::string::npos) return 0;
        std::string rest = url.substr(at + 3);
        rest = rest.substr(0, rest.find('/'));
        if (auto a = rest.rfind('@'); a != std::string::npos) rest = rest.substr(a + 1);
        const auto colon = rest.rfind(':');
        if (colon == std::string::npos) return 0;
        return std::atoi(rest.c_str() + colon + 1);
    }

    /// The DSN with its database path replaced.
    /// The admin DSN for `database`, as `user` with `password` when given.
    std::string DsnFor(const std::string& database, const std::string& user = {},
                       const std::string& password = {}) const {
        if (!user.empty()) {
            const auto scheme_end = pg_dsn.find("://") + 3;
            const auto at = pg_dsn.find('@', scheme_end);
            Servers as = *this;
            as.pg_dsn = pg_dsn.substr(0, scheme_end) + user + ":" + password + pg_dsn.substr(at);
            return as.DsnFor(database);
        }
        const auto scheme_end = pg_dsn.find("://") + 3;
        const auto slash = pg_dsn.find('/', scheme_end);
        const auto query = pg_dsn.find('?', scheme_end);
        std::string base = pg_dsn.substr(0, slash == std::string::npos ? query : slash);
        std::string q = query == std::string::npos ? "" : pg_dsn.substr(query);
        return base + "/" + database + q;
    }
};

inline pg::Connection OpenPg(const std::string& dsn, const std::string& app = "eventlog-e2e") {
    pg::ConnectOptions o;
    o.conninfo = dsn;
    o.application_name = app;
    o.connect_timeout = milliseconds(5000);
    return pg::Connection::Open(o);
}

/// A ClickHouse client for the test servers, with the credentials from EVENTLOG_TEST_CH_USER /
/// EVENTLOG_TEST_CH_PASSWORD when set.
inline clickhouse::Client OpenCh(const std::string& url, const std::string& database, milliseconds timeout) {
    clickhouse::ClientOptions o;
    o.base_url = url;
    if (!GetEnv("EVENTLOG_TEST_CH_USER").empty()) o.user = GetEnv("EVENTLOG_TEST_CH_USER");
    o.password = GetEnv("EVENTLOG_TEST_CH_PASSWORD");
    o.database = database;
    o.connect_timeout = milliseconds(2000);
    o.send_receive_timeout = timeout;
    return clickhouse::Client(o);
}

/// Retries `fn` (a server call) on eventlog::Error until `timeout`; rethrows the last error.
template <typename F>
auto Retrying(F&& fn, milliseconds timeout = milliseconds(30'000)) -> decltype(fn()) {
    const auto until = Clock::now() + timeout;
    for (;;) {
        try {
            return fn();
        } catch (const Error&) {
            if (Clock::now() >= until) throw;
            std::this_thread::sleep_for(milliseconds(100));
        }
    }
}

/// Committed, rolled-back and in-doubt event ids of a Producer.
struct ProducedEvents {
    std::vector<std::string> committed;
    std::vector<std::string> rolled_back;
    std::vector<std::string> in_doubt;  ///< COMMIT failed with an unknown outcome: present at most once.
    std::int64_t committed_txns{0};
    std::int64_t rolled_back_txns{0};
    std::int64_t failed_txns{0};  ///< A statement failed before COMMIT (nothing committed).
};

/// Emits events through SQL (`SELECT eventlog.emit(...)`) on its own thread and connection, in transactions of
/// 1..50 events, ~80% committed and ~20% rolled back, recording every event id. Pause() closes its connection
/// (for a PostgreSQL restart) until Resume(). Not copyable; call Stop() before reading Events().
class Producer {
public:
    Producer(std::string dsn, std::uint64_t seed, milliseconds max_pause = milliseconds(10))
        : dsn_(std::move(dsn)), rng_(seed), max_pause_(max_pause) {}
    ~Producer() { Stop(); }
    Producer(const Producer&) = delete;
    Producer& operator=(const Producer&) = delete;

    void Start() {
        thread_ = std::thread([this] { Loop(); });
    }

    void Stop() {
        stop_.store(true);
        {
            std::lock_guard lock(mu_);
            pause_requested_ = false;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

    /// Blocks until the producer is between transactions with its connection closed.
    void Pause() {
        std::unique_lock lock(mu_);
        pause_requested_ = true;
        cv_.wait_for(lock, std::chrono::seconds(60), [&] { return paused_ || stop_.load(); });
    }

    void Resume() {
        {
            std::lock_guard lock(mu_);
            pause_requested_ = false;
        }
        cv_.notify_all();
    }

    const ProducedEvents& Events() const { return events_; }
    std::int64_t CommittedSoFar() const { return committed_count_.load(); }
    const std::string& LastError() const { return last_error_; }

private:
    void Loop() {
        std::optional<pg::Connection> conn;
        std::uniform_int_distribution<int> size(1, 50);
        std::uniform_real_distribution<double> coin(0.0, 1.0);
        std::uniform_int_distribution<long> pause_ms(0, max_pause_.count());
        std::int64_t n = 0;
        while (!stop_.load()) {
            {
                std::unique_lock lock(mu_);
                if (pause_requested_) {
                    conn.reset();
                    paused_ = true;
                    cv_.notify_all();
                    cv_.wait(lock, [&] { return !pause_requested_ || stop_.load(); });
                    paused_ = false;
                    continue;
                }
            }
            try {
                if (!conn || !conn->Healthy()) {
                    conn.reset();
                    conn.emplace(OpenPg(dsn_, "eventlog-e2e-producer"));
                }
            } catch (const Error& e) {
                last_error_ = e.what();
                std::this_thread::sleep_for(milliseconds(100));
                continue;
            }
            const int k = size(rng_);
            const bool commit = coin(rng_) < 0.8;
            std::vector<std::string> ids;
            try {
                pg::Transaction tx(*conn);
                for (int i = 0; i < k; ++i) {
                    const std::string arg = std::to_string(++n);
                    const auto r =
                        tx.Exec("SELECT eventlog.emit('e2e_event', json_build_object('n', $1::bigint)::json)", {arg});
                    ids.emplace_back(r.Get(0, 0));
                }
                if (commit) {
                    try {
                        tx.Commit();
                    } catch (const InDoubtError& e) {
                        last_error_ = e.what();
                        events_.in_doubt.insert(events_.in_doubt.end(), ids.begin(), ids.end());
                        conn.reset();
                        continue;
                    }
                    events_.committed.insert(events_.committed.end(), ids.begin(), ids.end());
                    ++events_.committed_txns;
                    committed_count_.fetch_add(static_cast<std::int64_t>(ids.size()));
                } else {
                    tx.Rollback();
                    events_.rolled_back.insert(events_.rolled_back.end(), ids.begin(), ids.end());
                    ++events_.rolled_back_txns;
                }
            } catch (const Error& e) {
                // A statement failed before COMMIT: the transaction is rolled back, nothing was committed.
                last_error_ = e.what();
                events_.rolled_back.insert(events_.rolled_back.end(), ids.begin(), ids.end());
                ++events_.failed_txns;
                if (conn && !conn->Healthy()) conn.reset();
            }
            if (max_pause_.count() > 0) std::this_thread::sleep_for(milliseconds(pause_ms(rng_)));
        }
    }

    std::string dsn_;
    std::mt19937_64 rng_;
    milliseconds max_pause_;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::condition_variable cv_;
    bool pause_requested_{false};
    bool paused_{false};
    ProducedEvents events_;
    std::atomic<std::int64_t> committed_count_{0};
    std::string last_error_;
};

/// One end-to-end test's world: a fresh PostgreSQL database and a fresh ClickHouse database (same name),
/// migrated with `eventlog migrate`; relays spawned with an environment pointing at them; fault injection on the
/// servers; the final exactly-once check. One per test, used from the test thread.
class World {
public:
    /// Builds nothing yet; Setup() does the work so that failures are reported by gtest.
    explicit World(std::string test_name) : test_name_(std::move(test_name)), start_(Clock::now()) {}

    ~World() {
        relays_.clear();
        if (!keep_) DropDatabases();
    }

    /// Reads the servers, creates and migrates the databases. Returns an error message, empty on success.
    /// `adjust` may point the world at other servers than the environment's (the failover tests' own PostgreSQL).
    std::string Setup(const std::function<void(Servers&)>& adjust = {}) {
        if (auto err = Servers::Load(servers_); !err.empty()) return err;
        if (adjust) adjust(servers_);
        const long seed_env = EnvInt("EVENTLOG_E2E_SEED", 0);
        seed_ = seed_env ? static_cast<std::uint64_t>(seed_env) : std::random_device{}();
        rng_.seed(seed_);
        name_ = fmt::format("e2e_{}_{}", ::getpid(), std::uniform_int_distribution<std::uint32_t>(0, 1u << 30)(rng_));
        std::string log_root = GetEnv("EVENTLOG_E2E_LOG_DIR");
        if (log_root.empty()) log_root = std::string(EVENTLOG_SOURCE_DIR) + "/.local/e2e-logs";
        log_dir_ = fmt::format("{}/{}-{}", log_root, test_name_, name_);
        RunShell("mkdir -p '" + log_dir_ + "'");
        try {
            auto admin = OpenPg(servers_.pg_dsn);
            admin.Exec("CREATE DATABASE " + name_);
            pg_created_ = true;
        } catch (const Error& e) {
            return std::string("creating the PostgreSQL database: ") + e.what();
        }
        dsn_ = servers_.DsnFor(name_);
        base_env_ = CleanEnvironment();
        SetVar(base_env_, "EVENTLOG_ENV_FILE", "/dev/null");
        SetVar(base_env_, "DATABASE_URL", dsn_);
        SetVar(base_env_, "CLICKHOUSE_URI", servers_.ch_url + "/" + name_);
        if (!GetEnv("EVENTLOG_TEST_CH_USER").empty())
            SetVar(base_env_, "CLICKHOUSE_USER", GetEnv("EVENTLOG_TEST_CH_USER"));
        if (!GetEnv("EVENTLOG_TEST_CH_PASSWORD").empty()) {
            SetVar(base_env_, "CLICKHOUSE_PASSWORD", GetEnv("EVENTLOG_TEST_CH_PASSWORD"));
        }
        SetVar(base_env_, "ENVIRONMENT", "e2e");
        SetVar(base_env_, "LOG_LEVEL", "info");
        SetVar(base_env_, "EVENT_BATCH_SIZE", "1000");
        SetVar(base_env_, "EVENT_PROCESSING_INTERVAL", "0.2");
        SetVar(base_env_, "CLICKHOUSE_CONNECT_TIMEOUT", "1");
        SetVar(base_env_, "CLICKHOUSE_SEND_RECEIVE_TIMEOUT", "1");
        SetVar(base_env_, "RELAY_BACKOFF_BASE_MS", "20");
        SetVar(base_env_, "RELAY_BACKOFF_CAP_MS", "300");
        SetVar(base_env_, "RELAY_SHUTDOWN_TIMEOUT_MS", "5000");
        SetVar(base_env_, "METRICS_LISTEN", "off");  // relays run side by side; a test that needs it sets a port
        ch_created_ = true;
        const auto m = Eventlog({"migrate"}, {}, milliseconds(60'000));
        if (!m.Ok()) return "eventlog migrate failed (" + DescribeStatus(m.status) + "):\n" + m.output;
        // Migrated as the administrator; from here on relays (and `status`) run as a role holding only
        // eventlog_relay, and producers as one holding only eventlog_producer: the least privilege that works.
        try {
            auto admin = OpenPg(servers_.pg_dsn);
            for (const auto& [suffix, group] :
                 {std::pair{"relay", "eventlog_relay"}, {"producer", "eventlog_producer"}}) {
                const std::string role = name_ + "_" + suffix;
                const std::string password = fmt::format("{:016x}", rng_());
                admin.Exec(fmt::format("CREATE ROLE {} LOGIN PASSWORD '{}' IN ROLE {}", role, password, group));
                roles_.push_back(role);
                admin.Exec(fmt::format("GRANT CONNECT ON DATABASE {} TO {}", name_, role));
                (std::string_view(suffix) == "relay" ? relay_dsn_ : producer_dsn_) =
                    servers_.DsnFor(name_, role, password);
            }
        } catch (const Error& e) {
            return std::string("creating the relay and producer roles: ") + e.what();
        }
        SetVar(base_env_, "DATABASE_URL", relay_dsn_);
        Note(fmt::format("world {} seed={} logs={}", name_, seed_, log_dir_));
        return {};
    }

    std::mt19937_64& Rng() { return rng_; }
    std::uint64_t Seed() const { return seed_; }
    /// The administrator's DSN for this world's database (setting up, inspecting, faults).
    const std::string& Dsn() const { return dsn_; }
    /// A DSN for this world's database as a role that holds only eventlog_producer (it may only call emit()).
    const std::string& ProducerDsn() const { return producer_dsn_; }
    /// The relay role's DSN (what relays get as DATABASE_URL).
    const std::string& RelayDsn() const { return relay_dsn_; }
    const std::string& Name() const { return name_; }
    const std::string& LogDir() const { return log_dir_; }
    const Servers& Srv() const { return servers_; }
    std::string Table() const { return fmt::format("`{}`.`event_log`", name_); }
    int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
    void Keep() { keep_ = true; }

    /// Fault and event counters, printed in the summary.
    std::map<std::string, int>& Counts() { return counts_; }

    /// Adds `n` to counter `name`; thread-safe (a fault helper may run on a thread of the test's own).
    void Count(const std::string& name, int n = 1) {
        const std::lock_guard lock(notes_mutex_);
        counts_[name] += n;
    }

    /// Appends a line to the timeline (printed on failure and written to LogDir()/timeline.txt); thread-safe.
    void Note(const std::string& what) {
        const std::lock_guard lock(notes_mutex_);
        const std::string line = fmt::format("[{:8.3f}s] {}", SecondsSince(start_), what);
        timeline_.push_back(line);
        std::ofstream(log_dir_ + "/timeline.txt", std::ios::app) << line << "\n";
    }
    std::string Timeline(std::size_t last = 400) {
        const std::lock_guard lock(notes_mutex_);
        std::string out;
        const std::size_t from = timeline_.size() > last ? timeline_.size() - last : 0;
        for (std::size_t i = from; i < timeline_.size(); ++i) out += timeline_[i] + "\n";
        return out;
    }

    /// The environment for an eventlog child with `extra` variables on top.
    std::vector<std::string> ChildEnv(const std::map<std::string, std::string>& extra) const {
        auto env = base_env_;
        for (const auto& [k, v] : extra) SetVar(env, k, v);
        return env;
    }

    /// Runs `eventlog ARGS...` to completion.
    CommandResult Eventlog(std::vector<std::string> args, const std::map<std::string, std::string>& extra,
                           milliseconds timeout) {
        args.insert(args.begin(), EVENTLOG_BINARY);
        const std::string log = fmt::format("{}/cmd-{}-{}.log", log_dir_, args[1], ++commands_);
        return RunCommand(args, ChildEnv(extra), log, timeout);
    }

    /// Starts `eventlog relay` (with --drain when asked); its log is LogDir()/relay-N.log.
    Child& StartRelay(const std::map<std::string, std::string>& extra = {}, bool drain = false) {
        const int id = ++relay_seq_;
        std::vector<std::string> args{EVENTLOG_BINARY, "relay"};
        if (drain) args.push_back("--drain");
        std::string what;
        for (const auto& [k, v] : extra) what += " " + k + "=" + v;
        Note(fmt::format("relay#{} start{}{}", id, drain ? " --drain" : "", what));
        relays_.push_back(std::make_unique<Child>(Child::Spawn(fmt::format("relay#{}", id), args, ChildEnv(extra),
                                                               fmt::format("{}/relay-{}.log", log_dir_, id))));
        return *relays_.back();
    }

    /// SIGKILLs a relay and notes it; returns whether it was still running (false: it had ended by itself).
    bool KillRelay(Child& relay, const std::string& why = "kill -9") {
        const bool was_running = relay.Running();
        const int st = relay.Kill();
        Note(fmt::format("{} {} after {:.3f}s ({})", relay.Name(), why, relay.AgeSeconds(),
                         was_running ? "was running" : "had already ended: " + DescribeStatus(st)));
        if (was_running) Count("relay_kill9");
        return was_running;
    }

    /// Path of relay#`id`'s log.
    std::string RelayLogPath(int id) const { return fmt::format("{}/relay-{}.log", log_dir_, id); }

    /// The sizes of all relay logs now: RelayLogLines(mark) returns only what was written after this moment.
    using LogMark = std::map<std::string, std::size_t>;
    LogMark MarkLogs() const {
        LogMark mark;
        for (int i = 1; i <= relay_seq_; ++i) mark[RelayLogPath(i)] = FileSize(RelayLogPath(i));
        return mark;
    }

    /// The lines of every relay log (in relay order, each file in order), only those written after `since`.
    std::vector<LogLine> RelayLogLines(const LogMark& since = {}) const {
        std::vector<LogLine> out;
        for (int i = 1; i <= relay_seq_; ++i) {
            const auto path = RelayLogPath(i);
            const auto at = since.find(path);
            auto lines = ParseLog(path, at == since.end() ? 0 : at->second);
            out.insert(out.end(), std::make_move_iterator(lines.begin()), std::make_move_iterator(lines.end()));
        }
        return out;
    }

    /// Waits until `relay`'s log (from byte `from`) has a line with event `event` (and `field` == `value`);
    /// returns it, or nullopt after `timeout`.
    std::optional<LogLine> WaitForLogLine(const Child& relay, const std::string& event,
                                          milliseconds timeout = milliseconds(30'000), std::size_t from = 0,
                                          const std::string& field = {}, const std::string& value = {}) {
        std::optional<LogLine> found;
        WaitFor(
            [&] {
                const auto lines = ParseLog(relay.LogPath(), from);
                const long i = FindLine(lines, event, 0, field, value);
                if (i >= 0) found = lines[static_cast<std::size_t>(i)];
                return found.has_value();
            },
            timeout, milliseconds(20));
        return found;
    }

    /// Emits `n` events in one committed transaction through SQL (event n° `poison` of type poison_event, the
    /// others e2e_event); returns their ids in order.
    std::vector<std::string> EmitCommitted(int n, int poison = -1) {
        auto pg = Retrying([&] { return OpenPg(dsn_); });
        pg::Transaction tx(pg);
        const auto r = tx.Exec(
            "SELECT eventlog.emit(CASE WHEN g = $2::int THEN 'poison_event' ELSE 'e2e_event' END, "
            "json_build_object('n', g)::json) FROM generate_series(1, $1::int) g",
            {std::to_string(n), std::to_string(poison)});
        tx.Commit();
        std::vector<std::string> ids;
        for (int i = 0; i < r.Rows(); ++i) ids.emplace_back(r.Get(i, 0));
        Note(fmt::format("{} events committed", ids.size()));
        return ids;
    }

    /// SELECT count() of this test's event_log.
    std::int64_t ChRows() {
        auto ch = OpenCh(servers_.ch_url, name_, milliseconds(10'000));
        return std::stoll(Retrying([&] { return ch.Query(fmt::format("SELECT count() FROM {}", Table())); }));
    }

    /// Number of stage tables (eventlog_stage_*, views included) in this test's ClickHouse database.
    std::int64_t StageTables() {
        auto ch = OpenCh(servers_.ch_url, name_, milliseconds(10'000));
        return std::stoll(Retrying([&] {
            return ch.Query(fmt::format(
                "SELECT count() FROM system.tables WHERE database = '{}' AND name LIKE 'eventlog_stage_%'", name_));
        }));
    }

    /// A one-integer query on this test's PostgreSQL database.
    std::int64_t PgInt(const std::string& sql) {
        auto pg = Retrying([&] { return OpenPg(dsn_); });
        return pg.Exec(sql).GetInt(0, 0);
    }

    /// True when PostgreSQL backend `pid` has been waiting for its client for `quiet` or longer: idle, or stuck
    /// sending a result nobody reads. For a relay with ClickHouse frozen, that means it is blocked in ClickHouse.
    bool BackendQuiet(int pid, milliseconds quiet) {
        auto pg = Retrying([&] { return OpenPg(dsn_); });
        const auto r = pg.Exec(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int AND (state = 'idle' OR (state = 'active' "
            "AND wait_event = 'ClientWrite')) AND clock_timestamp() - state_change >= $2::int * interval '1 ms'",
            {std::to_string(pid), std::to_string(quiet.count())});
        return r.GetInt(0, 0) == 1;
    }

    /// pg_terminate_backend(`pid`); true when it hit a live backend.
    bool TerminateBackend(int pid) {
        auto admin = Retrying([&] { return OpenPg(dsn_); });
        const bool hit = admin.Exec("SELECT pg_terminate_backend($1::int)", {std::to_string(pid)}).Get(0, 0) == "t";
        Note(fmt::format("pg_terminate_backend({}): {}", pid, hit));
        Count("pg_terminate_backend");
        return hit;
    }

    /// Number of live relay sessions (application_name 'eventlog-relay') in this test's database.
    int RelaySessions() {
        auto admin = Retrying([&] { return OpenPg(dsn_); });
        return static_cast<int>(admin
                                    .Exec("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                          "'eventlog-relay' AND datname = current_database()")
                                    .GetInt(0, 0));
    }

    void KillAllRelays() {
        for (auto& r : relays_) {
            if (r->Running()) KillRelay(*r);
        }
        relays_.erase(std::remove_if(relays_.begin(), relays_.end(), [](const auto& r) { return !r->Running(); }),
                      relays_.end());
    }

    /// Runs a shell command (stack.sh) to completion.
    CommandResult RunShell(const std::string& command, milliseconds timeout = milliseconds(120'000)) {
        const std::string log = fmt::format("/tmp/eventlog-e2e-shell-{}.log", ::getpid());
        return RunCommand({"/bin/bash", "-c", command}, CleanEnvironment(), log, timeout);
    }

    std::string StackScript() const { return std::string(EVENTLOG_SOURCE_DIR) + "/scripts/stack.sh"; }

    pid_t ClickHousePid() const {
        return static_cast<pid_t>(std::atoi(ReadFile(servers_.stack_dir + "/ch/pid").c_str()));
    }

    /// kill -9 of ClickHouse, then `stack.sh start-ch` on the same port (its data survives).
    void KillAndRestartClickHouse(milliseconds down_for) {
        const pid_t pid = ClickHousePid();
        ASSERT_GT(pid, 0) << "no ClickHouse pid in " << servers_.stack_dir;
        Note(fmt::format("clickhouse kill -9 (pid {})", pid));
        ::kill(pid, SIGKILL);
        // Wait until it is gone (or a zombie nobody reaps, which holds no socket).
        const auto until = Clock::now() + milliseconds(20'000);
        while (Clock::now() < until && ProcessAlive(pid)) std::this_thread::sleep_for(milliseconds(20));
        ASSERT_FALSE(ProcessAlive(pid)) << "ClickHouse survived SIGKILL";
        ::unlink((servers_.stack_dir + "/ch/pid").c_str());  // a zombie would pass stack.sh's kill -0 check
        std::this_thread::sleep_for(down_for);
        const auto r =
            RunShell(fmt::format("'{}' start-ch '{}' {}", StackScript(), servers_.stack_dir, servers_.ch_port));
        ASSERT_TRUE(r.Ok()) << "stack.sh start-ch: " << DescribeStatus(r.status) << "\n" << r.output;
        Note(fmt::format("clickhouse restarted (pid {})", ClickHousePid()));
        Count("clickhouse_kill9_restart");
    }

    /// SIGSTOP of ClickHouse for `how_long`, then SIGCONT.
    void FreezeClickHouse(milliseconds how_long) {
        const pid_t pid = ClickHousePid();
        ASSERT_GT(pid, 0);
        Note(fmt::format("clickhouse SIGSTOP for {} ms", how_long.count()));
        ::kill(pid, SIGSTOP);
        std::this_thread::sleep_for(how_long);
        ::kill(pid, SIGCONT);
        Note("clickhouse SIGCONT");
        Count("clickhouse_sigstop");
    }

    /// SIGSTOP of PostgreSQL, the postmaster and every backend (`stack.sh freeze-pg`): its sockets stay open and
    /// nothing answers. ThawPostgres() (SIGCONT) must follow; PostgresFreeze does it on every path.
    void FreezePostgres() {
        const auto r = RunShell(fmt::format("'{}' freeze-pg '{}'", StackScript(), servers_.stack_dir));
        ASSERT_TRUE(r.Ok()) << "stack.sh freeze-pg: " << r.output;
        Note("postgresql SIGSTOP");
        Count("postgres_sigstop");
    }
    void ThawPostgres() {
        const auto r = RunShell(fmt::format("'{}' thaw-pg '{}'", StackScript(), servers_.stack_dir));
        EXPECT_TRUE(r.Ok()) << "stack.sh thaw-pg: " << r.output;
        Note("postgresql SIGCONT");
    }

    /// pg_terminate_backend() of every session of application_name 'eventlog-relay' in this test's database, once
    /// there is at least one (waits up to 30 s for it); returns how many it terminated.
    int TerminateRelayBackends() {
        WaitFor([&] { return RelaySessions() > 0; }, milliseconds(30'000), milliseconds(50));
        auto admin = Retrying([&] { return OpenPg(dsn_); });
        const auto r = admin.Exec(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'eventlog-relay' AND datname = current_database()");
        const int n = static_cast<int>(r.GetInt(0, 0));
        Note(fmt::format("pg_terminate_backend of {} relay sessions", n));
        Count("pg_terminate_backend");
        Count("pg_terminated_sessions", n);
        return n;
    }

    /// Stops and starts PostgreSQL (fast shutdown: every session is lost). Pause producers first.
    void RestartPostgres() {
        Note("postgresql restart: stop");
        auto r = RunShell(fmt::format("'{}' stop-pg '{}'", StackScript(), servers_.stack_dir));
        ASSERT_TRUE(r.Ok()) << "stack.sh stop-pg: " << r.output;
        r = RunShell(fmt::format("'{}' start-pg '{}' {}", StackScript(), servers_.stack_dir, servers_.pg_port));
        ASSERT_TRUE(r.Ok()) << "stack.sh start-pg: " << r.output;
        Note("postgresql restart: started");
        Count("postgres_restart");
    }

    /// Immediate shutdown of PostgreSQL (pg_ctl -m immediate: no checkpoint, so the next start runs crash recovery),
    /// then a start. Every session is lost with the transactions it had open. Returns the server's start time
    /// before and after, as text (they differ when the crash happened).
    std::pair<std::string, std::string> CrashPostgres() {
        const auto started = [&] {
            auto pg = Retrying([&] { return OpenPg(dsn_); });
            return std::string(pg.Exec("SELECT pg_postmaster_start_time()::text").Get(0, 0));
        };
        const std::string before = started();
        Note("postgresql immediate shutdown");
        auto r = RunShell(fmt::format("'{}' crash-pg '{}'", StackScript(), servers_.stack_dir));
        EXPECT_TRUE(r.Ok()) << "stack.sh crash-pg: " << r.output;
        r = RunShell(fmt::format("'{}' start-pg '{}' {}", StackScript(), servers_.stack_dir, servers_.pg_port));
        EXPECT_TRUE(r.Ok()) << "stack.sh start-pg: " << r.output;
        Note("postgresql started after its crash");
        Count("postgres_immediate_shutdown");
        return {before, started()};
    }

    /// Moves the server's transaction ids on by at least `n` (each subtransaction that writes takes one).
    void BurnTransactionIds(int n) {
        auto pg = Retrying([&] { return OpenPg(dsn_); });
        pg.Exec("CREATE TEMP TABLE burn (x integer)");
        pg.Exec(
            fmt::format("DO $$ BEGIN FOR i IN 1..{} LOOP BEGIN INSERT INTO burn VALUES (i); "
                        "EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$",
                        n));
    }

    /// Runs `eventlog relay --drain` to completion; fails the test when it does not exit 0 in time.
    void Drain(milliseconds timeout = milliseconds(180'000), const std::map<std::string, std::string>& extra = {}) {
        const auto t0 = Clock::now();
        Child& drain = StartRelay(extra, true);
        auto st = drain.Wait(timeout);
        if (!st) {
            drain.Kill();
            ADD_FAILURE() << "eventlog relay --drain did not finish within " << timeout.count() << " ms; log:\n"
                          << Tail(ReadFile(drain.LogPath()), 4000);
            return;
        }
        Note(fmt::format("drain finished: {} in {:.1f}s", DescribeStatus(*st), SecondsSince(t0)));
        EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "relay --drain: " << DescribeStatus(*st) << "\n"
                                                             << Tail(ReadFile(drain.LogPath()), 4000);
    }

    /// The exactly-once check: ClickHouse holds every committed event once except the `dead_lettered` ones, which
    /// are exactly the contents of eventlog.dead_letter; no rolled-back event; the outbox and the delivery records
    /// are empty. Fails when no event was committed (a run that delivered nothing proves nothing). Returns the
    /// number of committed events expected in ClickHouse.
    std::int64_t VerifyExactlyOnce(const ProducedEvents& produced, const std::vector<std::string>& dead_lettered = {}) {
        auto pg = Retrying([&] { return OpenPg(dsn_); });
        const auto left = pg.Exec(
            "SELECT (SELECT count(*) FROM eventlog.outbox_pending), (SELECT count(*) FROM eventlog.in_flight), "
            "(SELECT count(*) FROM eventlog.dead_letter)");
        EXPECT_EQ(left.GetInt(0, 0), 0) << "events left in eventlog.outbox (not acknowledged)";
        EXPECT_EQ(left.GetInt(0, 1), 0) << "records left in flight";
        EXPECT_EQ(testing::CheckRanges(pg, true), "") << "the offline checker of ranges and chunks";
        EXPECT_EQ(left.GetInt(0, 2), static_cast<std::int64_t>(dead_lettered.size()))
            << "events in eventlog.dead_letter";
        {
            std::set<std::string> dead_expected(dead_lettered.begin(), dead_lettered.end()), dead_found;
            const auto d = pg.Exec("SELECT event_id::text FROM eventlog.dead_letter");
            for (int i = 0; i < d.Rows(); ++i) dead_found.emplace(d.Get(i, 0));
            EXPECT_EQ(dead_found, dead_expected) << "eventlog.dead_letter holds other events than expected";
        }
        const auto status = Eventlog({"status", "--json"}, {}, milliseconds(30'000));
        EXPECT_TRUE(status.Ok()) << status.output;
        EXPECT_NE(status.output.find("\"pending\":0,"), std::string::npos) << status.output;
        EXPECT_NE(status.output.find("\"in_flight_events\":0,"), std::string::npos) << status.output;
        EXPECT_NE(status.output.find(fmt::format("\"dead_letters\":{},", dead_lettered.size())), std::string::npos)
            << status.output;

        auto ch = OpenCh(servers_.ch_url, name_, milliseconds(60'000));
        const auto totals = SplitLines(Retrying([&] {
            return ch.Query(fmt::format("SELECT count(), uniqExact(event_id) FROM {} FORMAT TabSeparated", Table()));
        }));
        std::int64_t count = -1, unique = -1;
        if (!totals.empty()) std::sscanf(totals[0].c_str(), "%ld\t%ld", &count, &unique);
        std::unordered_map<std::string, int> seen;
        for (auto& id : SplitLines(Retrying([&] {
                 return ch.Query(fmt::format("SELECT toString(event_id) FROM {} FORMAT TabSeparated", Table()));
             }))) {
            ++seen[id];
        }
        const std::unordered_set<std::string> dead(dead_lettered.begin(), dead_lettered.end());
        std::unordered_set<std::string> committed;
        for (const auto& id : produced.committed) {
            if (!dead.count(id)) committed.insert(id);
        }
        EXPECT_GT(committed.size(), 0u) << "no committed event to deliver: this run proves nothing";
        std::int64_t in_doubt_present = 0;
        for (const auto& id : produced.in_doubt) {
            if (seen.count(id)) ++in_doubt_present;
        }
        const auto expected = static_cast<std::int64_t>(committed.size()) + in_doubt_present;
        EXPECT_EQ(committed.size() + dead.size(), produced.committed.size()) << "the producer got a uuid twice?";

        std::vector<std::string> missing, duplicated, phantom, unexpected;
        for (const auto& id : committed) {
            if (!seen.count(id)) missing.push_back(id);
        }
        std::unordered_set<std::string> rolled(produced.rolled_back.begin(), produced.rolled_back.end());
        std::unordered_set<std::string> doubt(produced.in_doubt.begin(), produced.in_doubt.end());
        for (const auto& [id, n] : seen) {
            if (n > 1) duplicated.push_back(id);
            if (rolled.count(id) || dead.count(id))
                phantom.push_back(id);
            else if (!committed.count(id) && !doubt.count(id))
                unexpected.push_back(id);
        }
        counts_["events_committed"] = static_cast<int>(committed.size());
        counts_["events_rolled_back"] = static_cast<int>(rolled.size());
        counts_["events_in_doubt"] = static_cast<int>(doubt.size());
        counts_["clickhouse_rows"] = static_cast<int>(count);

        EXPECT_EQ(count, expected) << "SELECT count() differs from the number of committed events";
        EXPECT_EQ(unique, expected) << "SELECT uniqExact(event_id) differs from the number of committed events";
        EXPECT_TRUE(missing.empty()) << missing.size() << " committed events are missing, e.g. " << missing.front();
        EXPECT_TRUE(phantom.empty()) << phantom.size()
                                     << " rolled-back or dead-lettered events are in ClickHouse, e.g. "
                                     << phantom.front();
        EXPECT_TRUE(unexpected.empty()) << unexpected.size() << " unknown event ids in ClickHouse";
        EXPECT_TRUE(duplicated.empty()) << duplicated.size() << " events are in ClickHouse more than once:\n"
                                        << ExplainDuplicates(ch, duplicated);
        if (!missing.empty() || !duplicated.empty() || !phantom.empty() || count != expected) {
            Keep();
            // The ids, for forensics: grep them in the relay logs, look them up in PostgreSQL and ClickHouse.
            std::ofstream m(log_dir_ + "/missing_ids.txt");
            for (const auto& id : missing) m << id << "\n";
            std::ofstream d(log_dir_ + "/duplicated_ids.txt");
            for (const auto& id : duplicated) d << id << "\n";
            if (!missing.empty()) {
                const auto where = pg.Exec(
                    "SELECT (SELECT count(*) FROM eventlog.outbox WHERE event_id = $1::uuid), "
                    "(SELECT count(*) FROM eventlog.in_flight d, unnest(d.events) e WHERE e.event_id = $1::uuid), "
                    "(SELECT count(*) FROM eventlog.dead_letter WHERE event_id = $1::uuid)",
                    {missing.front()});
                ADD_FAILURE() << "missing event " << missing.front() << ": outbox=" << where.Get(0, 0)
                              << " delivery=" << where.Get(0, 1) << " dead_letter=" << where.Get(0, 2)
                              << "; all missing ids in " << log_dir_ << "/missing_ids.txt";
            }
            ADD_FAILURE() << "timeline (seed " << seed_ << ", logs and databases kept in " << log_dir_ << ", " << name_
                          << "):\n"
                          << Timeline();
        }
        return static_cast<std::int64_t>(committed.size());
    }

    /// For duplicated event ids: their batches and insert times, and which relay logs mention those batches.
    std::string ExplainDuplicates(clickhouse::Client& ch, const std::vector<std::string>& ids) {
        std::string in;
        for (std::size_t i = 0; i < ids.size() && i < 200; ++i) in += (i ? ",'" : "'") + ids[i] + "'";
        std::string out;
        try {
            out = ch.Query(
                fmt::format("SELECT toString(batch_id) b, count() rows, uniqExact(event_id) ids, min(inserted_at), "
                            "max(inserted_at) "
                            "FROM {} WHERE toString(event_id) IN ({}) GROUP BY b ORDER BY b FORMAT TabSeparated",
                            Table(), in));
        } catch (const Error& e) {
            return std::string("(could not query: ") + e.what() + ")";
        }
        std::string detail = "batch_id\trows\tids\tfirst_insert\tlast_insert\n" + out;
        for (const auto& line : SplitLines(out)) {
            const std::string batch = line.substr(0, line.find('\t'));
            const auto grep =
                RunShell(fmt::format("grep -H '{}' '{}'/relay-*.log | cut -c1-400 | head -40", batch, log_dir_));
            detail += "--- " + batch + " in relay logs:\n" + grep.output;
        }
        return detail;
    }

    /// "name=count ..." of the counters.
    std::string Summary() const {
        std::string s;
        for (const auto& [k, v] : counts_) s += fmt::format(" {}={}", k, v);
        return s;
    }

    /// Adds log-derived counters (recoveries, fault-point kills) over all relay logs.
    void CountFromLogs() {
        int recovering = 0, fault = 0;
        for (int i = 1; i <= relay_seq_; ++i) {
            const std::string path = fmt::format("{}/relay-{}.log", log_dir_, i);
            recovering += CountInFile(path, "batch_recovering");
            fault += CountInFile(path, "fault_point_kill");
        }
        counts_["log_batch_recovering"] = recovering;
        counts_["log_fault_point_kill"] = fault;
    }

    /// Restarts ClickHouse if an earlier step left it stopped or dead (so later tests are not affected).
    void EnsureClickHouse() {
        const pid_t pid = ClickHousePid();
        if (pid > 0) ::kill(pid, SIGCONT);
        if (pid > 0 && ProcessAlive(pid)) return;
        ::unlink((servers_.stack_dir + "/ch/pid").c_str());
        RunShell(fmt::format("'{}' start-ch '{}' {}", StackScript(), servers_.stack_dir, servers_.ch_port));
    }

    static bool ProcessAlive(pid_t pid) {
        if (::kill(pid, 0) != 0) return false;
        const std::string stat = ReadFile(fmt::format("/proc/{}/stat", pid));
        const auto close = stat.rfind(')');
        return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'Z';
    }

private:
    void DropDatabases() {
        if (name_.empty()) return;
        if (ch_created_) {
            try {
                auto ch = OpenCh(servers_.ch_url, "default", milliseconds(30'000));
                ch.Execute(fmt::format("DROP DATABASE IF EXISTS `{}`", name_));
            } catch (const std::exception&) {
            }
        }
        if (pg_created_) {
            try {
                auto admin = OpenPg(servers_.pg_dsn);
                admin.Exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
                for (const auto& role : roles_) admin.Exec("DROP ROLE IF EXISTS " + role);
            } catch (const std::exception&) {
            }
        }
    }

    std::string test_name_;
    Clock::time_point start_;
    Servers servers_;
    std::uint64_t seed_{0};
    std::mt19937_64 rng_;
    std::string name_;
    std::string dsn_;
    std::string relay_dsn_;
    std::string producer_dsn_;
    std::vector<std::string> roles_;
    std::string log_dir_;
    std::vector<std::string> base_env_;
    bool pg_created_{false};
    bool ch_created_{false};
    bool keep_{false};
    int relay_seq_{0};
    int commands_{0};
    std::vector<std::unique_ptr<Child>> relays_;
    std::vector<std::string> timeline_;
    std::map<std::string, int> counts_;
    std::mutex notes_mutex_;  // guards timeline_ and counts_ for Note() and Count()
};

/// A gtest fixture owning a World set up in SetUp() (a missing server variable FAILS the test there).
class E2eTest : public ::testing::Test {
protected:
    void SetUp() override {
        start_ = Clock::now();
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        world_ = std::make_unique<World>(std::string(info->test_suite_name()) + "." + info->name());
        const std::string err = world_->Setup();
        ASSERT_TRUE(err.empty()) << err;
    }
    void TearDown() override {
        if (world_) {
            world_->KillAllRelays();
            world_->EnsureClickHouse();
            if (HasFailure()) world_->Keep();
        }
        const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
        std::printf("[ e2e      ] %s.%s: %.1f s%s\n", info->test_suite_name(), info->name(), SecondsSince(start_),
                    world_ ? world_->Summary().c_str() : "");
        std::fflush(stdout);
        world_.reset();
    }

    std::unique_ptr<World> world_;
    Clock::time_point start_;
};

}  // namespace eventlog::e2e
