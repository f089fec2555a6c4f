#pragma once

// Writing a request's events into the outbox: one statement in one transaction (WriteEvents), and group commit of
// small concurrent requests (GroupCommitter). docs/http-api.md, "Group commit".
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <eventlog/pg/pool.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http/input.hpp"

namespace eventlog::http {
struct ParsedToken;
}  // namespace eventlog::http

namespace eventlog::http::detail {

/// One event's outcome, in request order.
struct EventResult {
    std::size_t index{0};
    std::string event_id;
    bool accepted{false};  ///< false: a duplicate of an event_id accepted before (docs/delivery.md, "Idempotency").
};

/// Writes `events` with one statement in one transaction on `session` and returns their results after the commit.
/// Throws ProblemError 400 naming the field and index when emit() refuses an event (nothing is written),
/// InDoubtError when the commit's outcome is unknown (the session is discarded), and other Errors as they come.
std::vector<EventResult> WriteEvents(pg::Pool::Lease& session, const std::vector<IncomingEvent>& events);

/// Group commit settings with documented defaults.
struct GroupCommitOptions {
    std::chrono::microseconds window{200};  ///< HTTP_GROUP_COMMIT_US: how long a group gathers; 0 disables.
    std::size_t max_request_events{100};    ///< Requests with more events are written alone.
    std::size_t max_group_events{1000};     ///< A group closes early once it holds this many events.
    /// HTTP_GROUP_COMMIT_GROUPS: groups writing at once at most (at least 1). A group whose window has passed
    /// gathers on while this many are writing, so that under load groups grow instead of queueing for the database.
    std::size_t max_writing_groups{2};
};

/// Group commit: a request that finds no open group opens one, gathers the requests that arrive within the window
/// (and on, while max_writing_groups other groups are writing), then checks every member's API key in one statement and
/// writes all their events with one statement in one transaction on one pooled session; each member is answered after
/// that commit with its own results. When the shared statement fails on an event emit() refuses, every member is
/// written again in its own transaction, so a bad request cannot fail its neighbours. Any other failure of the group
/// (no session, connection lost, commit in doubt) is every member's. Thread-safe; not copyable; borrows `pool`, which
/// must outlive it.
class GroupCommitter {
public:
    GroupCommitter(pg::Pool& pool, std::string secret_key, const GroupCommitOptions& options);
    GroupCommitter(const GroupCommitter&) = delete;
    GroupCommitter& operator=(const GroupCommitter&) = delete;

    /// True when a request of `events` events is written through a group (grouping on and the request small).
    bool Takes(std::size_t events) const noexcept;

    /// Checks `token`'s key and writes `events` in a group; blocks until the group's commit. Throws ProblemError 401
    /// when the key is unknown or revoked, and otherwise as WriteEvents does.
    std::vector<EventResult> Submit(const ParsedToken& token, const std::vector<IncomingEvent>& events);

private:
    struct Member;
    struct Group;
    void Execute(Group& group);

    pg::Pool& pool_;
    std::string secret_key_;
    GroupCommitOptions options_;
    std::mutex mutex_;
    std::condition_variable slot_freed_;  // a writing group finished
    std::size_t writing_{0};              // groups between closing and their members' answers
    std::shared_ptr<Group> open_;         // the group still gathering members, if any
};

}  // namespace eventlog::http::detail
