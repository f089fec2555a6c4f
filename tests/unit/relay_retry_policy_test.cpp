// Decide(error, state) for every error class against every state the batch sender can be in.
#include <gtest/gtest.h>

#include <eventlog/clickhouse/errors.hpp>
#include <eventlog/core/error.hpp>
#include <eventlog/pg/errors.hpp>
#include <string>
#include <vector>

#include "relay/detail/retry_policy.hpp"

namespace eventlog::relay::detail {
namespace {

Error ClickHouseError(ErrorKind kind, const std::string& code) {
    Error e(kind, "test");
    e.SetOrigin(ErrorSource::kClickHouse, code);
    return e;
}

SendState State(std::size_t rows, int failures = 0, int row_attempts = 0) {
    SendState s;
    s.rows = rows;
    s.failures = failures;
    s.row_attempts = row_attempts;
    s.max_attempts = 5;
    return s;
}

struct Case {
    const char* name;
    Error error;
    SendState state;
    Action expected;
};

TEST(RetryPolicyTest, EveryErrorClassAgainstEveryState) {
    const Error transient = ClickHouseError(ErrorKind::kTransient, "252");  // TOO_MANY_PARTS: known
    const Error full_disk = ClickHouseError(ErrorKind::kTransient, "243");  // NOT_ENOUGH_SPACE: known, not the rows'
    const Error unknown = ClickHouseError(ErrorKind::kTransient, "99999");  // a code nobody classified
    const Error throttled = ClickHouseError(ErrorKind::kTransient, "HTTP 429");
    const Error too_large = ClickHouseError(ErrorKind::kTransient, "HTTP 413");
    const Error in_doubt = ClickHouseError(ErrorKind::kInDoubt, "209");
    const Error rejected = ClickHouseError(ErrorKind::kRejected, "395");
    const Error config = ClickHouseError(ErrorKind::kConfiguration, "60");
    const Error fatal(ErrorKind::kFatal, "bug");
    const Error network = TransientError("cannot connect");  // no code: nothing reached the server
    SendState lost = State(10);
    lost.session_lost = true;
    auto with = [](const Error& e, std::size_t rows, int failures, int row_attempts = 0, bool accepted = false,
                   bool waiting = false) {
        SendState s = State(rows, failures, row_attempts);
        s.cause = CauseOf(e);
        s.others_accepted = accepted;
        s.others_waiting = waiting;
        return s;
    };
    const std::vector<Case> cases = {
        {"lost session beats a rejection", rejected, lost, Action::kLeaveToRecovery},
        {"lost session beats a transient error", transient, lost, Action::kLeaveToRecovery},
        {"fatal stops", fatal, State(10), Action::kStop},
        {"in doubt ends the session", in_doubt, State(10), Action::kLeaveToRecovery},
        {"in doubt ends the session for one row", in_doubt, State(1), Action::kLeaveToRecovery},
        {"configuration pauses", config, State(10), Action::kPause},
        {"configuration pauses after many failures", config, State(1, 50), Action::kPause},
        {"known transient reconciles", transient, with(transient, 10, 0), Action::kReconcileAndRetry},
        {"known transient retries forever", transient, with(transient, 10, 500), Action::kReconcileAndRetry},
        {"known transient on one row never dead-letters", transient, with(transient, 1, 50, 50, true),
         Action::kReconcileAndRetry},
        {"a full disk is never about the rows", full_disk, with(full_disk, 1, 50, 0, true), Action::kReconcileAndRetry},
        {"network error reconciles", network, with(network, 10, 3), Action::kReconcileAndRetry},
        {"a refusal retries without a presence check", throttled, with(throttled, 10, 0), Action::kRetry},
        {"a refusal never bisects", throttled, with(throttled, 10, 40), Action::kRetry},
        {"a refusal of one row never dead-letters", throttled, with(throttled, 1, 40, 40, true), Action::kRetry},
        {"unknown code is retried at first", unknown, with(unknown, 10, 0), Action::kReconcileAndRetry},
        {"unknown code bisects at the limit", unknown, with(unknown, 10, 4), Action::kBisect},
        {"unknown code on one row with evidence retries below the limit", unknown, with(unknown, 1, 4, 2, true),
         Action::kReconcileAndRetry},
        {"unknown code on one row with evidence dead-letters at the limit", unknown, with(unknown, 1, 4, 4, true),
         Action::kDeadLetter},
        {"unknown code on one row without evidence waits behind the others", unknown,
         with(unknown, 1, 4, 4, false, true), Action::kDefer},
        {"unknown code on a lone row without evidence pauses, never dead-letters", unknown,
         with(unknown, 1, 40, 40, false, false), Action::kReconcileAndRetry},
        {"413 is retried without a presence check at first", too_large, with(too_large, 2, 0), Action::kRetry},
        {"413 bisects at the limit", too_large, with(too_large, 2, 4), Action::kBisect},
        {"rejection bisects a chunk", rejected, State(2), Action::kBisect},
        {"rejection of one row reconciles and retries", rejected, State(1, 0, 0), Action::kReconcileAndRetry},
        {"rejection of one row dead-letters at the limit", rejected, State(1, 0, 4), Action::kDeadLetter},
    };
    for (const auto& c : cases) {
        EXPECT_EQ(ToString(Decide(c.error, c.state)), std::string(ToString(c.expected))) << c.name;
    }
}

// The delivery loop's decision for each error kind (the loop itself classifies nothing).
TEST(RetryPolicyTest, TheLoopStopsOnlyOnFatalOrInvalidInputAndPausesOnlyOnConfiguration) {
    const std::vector<std::pair<ErrorKind, LoopAction>> table = {
        {ErrorKind::kFatal, LoopAction::kStop},          {ErrorKind::kInvalidInput, LoopAction::kStop},
        {ErrorKind::kConfiguration, LoopAction::kPause}, {ErrorKind::kTransient, LoopAction::kReconnect},
        {ErrorKind::kInDoubt, LoopAction::kReconnect},   {ErrorKind::kRejected, LoopAction::kReconnect},
    };
    for (const auto& [kind, expected] : table) {
        EXPECT_EQ(DecideLoop(Error(kind, "test")), expected) << ToString(kind);
        EXPECT_STREQ(ToString(DecideLoop(Error(kind, "test"))), ToString(expected));
    }
    // A PostgreSQL error keeps its kind's decision: the loop does not look at its source.
    TransientError canceled("postgresql: canceling statement due to statement timeout", false);
    canceled.SetOrigin(ErrorSource::kPostgres, "57014");
    EXPECT_EQ(DecideLoop(canceled), LoopAction::kReconnect);
}

TEST(RetryPolicyTest, UnknownServerErrorIsOnlyAClickHouseCodeNobodyClassified) {
    EXPECT_TRUE(clickhouse::IsUnknownServerError(ClickHouseError(ErrorKind::kTransient, "99999")));
    EXPECT_TRUE(clickhouse::IsUnknownServerError(ClickHouseError(ErrorKind::kTransient, "HTTP 413")));
    EXPECT_FALSE(clickhouse::IsUnknownServerError(ClickHouseError(ErrorKind::kTransient, "252")));
    EXPECT_FALSE(clickhouse::IsUnknownServerError(TransientError("cannot connect")));
    Error pg(ErrorKind::kTransient, "x");
    pg.SetOrigin(ErrorSource::kPostgres, "40001");
    EXPECT_FALSE(clickhouse::IsUnknownServerError(pg));
}

TEST(SqlstateTest, ClassifiesEachFamily) {
    struct Row {
        const char* state;
        ErrorKind kind;
        bool poisons;
    };
    const Row rows[] = {
        {"08006", ErrorKind::kTransient, true},      {"57P01", ErrorKind::kTransient, true},
        {"25006", ErrorKind::kTransient, true},      {"40001", ErrorKind::kTransient, false},
        {"40P01", ErrorKind::kTransient, false},     {"55P03", ErrorKind::kTransient, false},
        {"53100", ErrorKind::kTransient, false},     {"28P01", ErrorKind::kConfiguration, false},
        {"3D000", ErrorKind::kConfiguration, false}, {"42P01", ErrorKind::kConfiguration, false},
        {"42501", ErrorKind::kConfiguration, false}, {"22023", ErrorKind::kInvalidInput, false},
        {"23505", ErrorKind::kInvalidInput, false},  {"54000", ErrorKind::kTransient, false},
        {"XX000", ErrorKind::kFatal, false},
    };
    for (const auto& r : rows) {
        const auto c = pg::ClassifySqlstate(r.state);
        EXPECT_EQ(ToString(c.kind), std::string(ToString(r.kind))) << r.state;
        EXPECT_EQ(c.poisons_connection, r.poisons) << r.state;
    }
}

}  // namespace
}  // namespace eventlog::relay::detail
