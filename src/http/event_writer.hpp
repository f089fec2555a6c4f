#pragma once

// Writing a request's events into the outbox: one statement in one transaction (WriteEvents), and group commit of
// small concurrent requests (GroupCommitter). docs/http-api.md, "Group commit".
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <eventlog/pg/pool.hpp>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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

/// Writes `events`, sent with API key `key_id`, with one statement in one transaction on `session` and returns their
/// results after the commit. Throws ProblemError 400 naming the field and index when the outbox refuses an event,
/// 409 naming event_id and the index when an event's id belongs to another writer (nothing is written either way),
/// InDoubtError when the commit's outcome is unknown (the session is discarded), and other Errors as they come.
std::vector<EventResult> WriteEvents(pg::Pool::Lease& session, const std::vector<IncomingEvent>& events,
                                     std::int64_t key_id);

/// Group commit settings with documented defaults.
struct GroupCommitOptions {
    std::chrono::microseconds window{200};  ///< HTTP_GROUP_COMMIT_US: how long a group gathers; 0 disables.
    std::size_t max_request_events{100};    ///< Requests with more events are written alone.
    std::size_t max_group_events{1000};     ///< A group closes early once it holds this many events.
    /// A group closes before its events' bytes (contexts, names and the other fields) would pass this; a request
    /// larger than it is written alone. Bounds the memory and the statement of one group (issue 20: 63 requests of
    /// 16 MiB made a 1 GiB group).
    std::size_t max_group_bytes{16u << 20};
    /// HTTP_GROUP_COMMIT_GROUPS: writer threads, so groups writing at once at most (at least 1). A group whose window
    /// has passed gathers on while this many are writing, so that under load groups grow instead of queueing for the
    /// database.
    std::size_t max_writing_groups{2};
    /// A group that waited longer than this for a writer (every writer held up by a database that answers slowly or
    /// not at all) is not written: its members get PoolTimeoutError (503 with Retry-After), nothing of theirs
    /// stored. With the sessions' statement deadline this bounds every member's wait.
    std::chrono::milliseconds max_queue_wait{5'000};
};

/// Group commit: small requests are queued into the open group; a writer thread (max_writing_groups of them, so that
/// many groups write at once) takes a group once its window has passed since it opened (at once when it is full, and
/// only when a writer is free, so that under load groups grow instead of queueing for the database), checks every
/// member's API key in one statement and writes all their events with one statement in one transaction on one
/// pooled session; each member is answered after that commit with its own results. When the shared statement fails
/// on an event the outbox refuses (SQLSTATE class 22 or 23), or with an error that rolled it back and may not recur
/// for one member alone (a deadlock, a statement timeout: transient, the session intact), every member is written
/// again in its own transaction, so a bad request cannot fail its neighbours. A failure that leaves the outcome
/// unknown or the session gone (connection lost, commit in doubt, no session) is every member's.
/// Thread-safe; not copyable; borrows `pool`, which must outlive it. The destructor writes the groups already
/// gathered (every member is answered) and joins the writers.
class GroupCommitter {
public:
    /// A member's answer: its results in request order, or its error (then `results` is empty). Called exactly once,
    /// on a writer thread; must not block.
    using Done = std::function<void(std::vector<EventResult> results, std::exception_ptr error)>;

    GroupCommitter(pg::Pool& pool, std::string secret_key, const GroupCommitOptions& options);
    ~GroupCommitter();
    GroupCommitter(const GroupCommitter&) = delete;
    GroupCommitter& operator=(const GroupCommitter&) = delete;

    /// True when `events` are written through a group (grouping on and the request small in events and bytes).
    bool Takes(const std::vector<IncomingEvent>& events) const noexcept;

    /// Queues `events` for a group under `token`'s key and returns at once; `done` gets the answer after the group's
    /// commit: ProblemError 401 when the key is unknown or revoked, otherwise as WriteEvents answers. Only when
    /// Takes(events.size()).
    void Enqueue(const ParsedToken& token, std::vector<IncomingEvent> events, Done done);

    /// Enqueue() for a caller that may block: waits for the group's commit, returns the results or throws the error.
    std::vector<EventResult> Submit(const ParsedToken& token, std::vector<IncomingEvent> events);

private:
    struct Member;
    struct Group;
    void Run();  // one writer thread
    void Execute(Group& group);

    pg::Pool& pool_;
    std::string secret_key_;
    GroupCommitOptions options_;
    std::mutex mutex_;
    std::condition_variable changed_;          // a group opened or filled, or the committer is stopping
    std::unique_ptr<Group> open_;              // the group gathering members, if any
    std::deque<std::unique_ptr<Group>> full_;  // closed because full, waiting for a writer, oldest first
    std::uint64_t serial_{0};                  // of the last group opened
    bool stopping_{false};
    std::vector<std::thread> writers_;
};

}  // namespace eventlog::http::detail
