#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <eventlog/pg/connection.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace eventlog::http {

/// A token as presented: "elk_<key id>_<43 base64url characters of 32 random bytes>". The id finds the stored
/// hash; the random part is what is secret.
struct ParsedToken {
    std::int64_t key_id{0};
    std::array<unsigned char, 32> secret{};
};

/// Parses a token; nullopt when it is not of our form.
std::optional<ParsedToken> ParseToken(std::string_view token);

/// HMAC-SHA256(secret_key, token secret): what the database stores. `secret_key` must not be empty.
std::array<unsigned char, 32> HashTokenSecret(std::string_view secret_key, const std::array<unsigned char, 32>& secret);

/// Throws ConfigError naming SECRET_KEY when it is empty (the value is never printed).
void RequireSecretKey(std::string_view secret_key);

/// As RequireSecretKey, and also when the value has less than 32 bytes of entropy by a conservative estimate (the
/// character classes it uses and how many distinct characters): what `eventlog serve` and `apikey create` require.
void RequireStrongSecretKey(std::string_view secret_key);

/// The scopes a key may carry (migration 0014), each the right to one route: POST /api/v1/events, GET
/// /api/v1/events/{event_id}, POST /api/v1/users.
inline constexpr std::string_view kScopeEventsWrite = "events:write";
inline constexpr std::string_view kScopeEventsRead = "events:read";
inline constexpr std::string_view kScopeUsersWrite = "users:write";

/// Creates a key named `name` (1-200 printable ASCII characters) with `scopes` (each one of the kScope* values;
/// empty: all of them) through eventlog.api_key_create (eventlog_admin) and returns its token, which is stored
/// nowhere: only its HMAC is. Throws InvalidInputError for a bad or duplicate name or an unknown scope.
std::string CreateApiKey(pg::Connection& connection, std::string_view secret_key, std::string_view name,
                         const std::vector<std::string>& scopes = {});

/// Stores a new key: (name, HMAC of its secret as bytea hex input "\\x...", scopes as a text[] literal) -> its id.
using KeyStore = std::function<std::int64_t(const std::string&, const std::string&, const std::string&)>;

/// As CreateApiKey, with the key stored by `store` (the console stores it through its audited function).
std::string CreateApiKeyWith(std::string_view secret_key, std::string_view name, const std::vector<std::string>& scopes,
                             const KeyStore& store);

/// One key as `apikey list` shows it (never its hash).
struct ApiKeyInfo {
    std::string name;
    std::string created_at;
    std::string revoked_at;  ///< "" while active.
    std::vector<std::string> scopes;
};

/// Every key, oldest first (eventlog.api_key_list, eventlog_admin).
std::vector<ApiKeyInfo> ListApiKeys(pg::Connection& connection);

/// Revokes the key named `name`; false when there is no such active key (eventlog.api_key_revoke, eventlog_admin).
bool RevokeApiKey(pg::Connection& connection, std::string_view name);

/// True when `token` belongs to an unrevoked key: one call to eventlog.api_key_hash (eventlog_producer), then a
/// constant-time comparison (CRYPTO_memcmp) of the HMACs. Asked per request, so a revocation holds at once on every
/// server process.
bool VerifyToken(pg::Connection& connection, std::string_view secret_key, std::string_view token);

/// The stored HMACs of the unrevoked keys among `key_ids`, in one statement (eventlog.api_key_hash per id,
/// eventlog_producer); ids without an active key are absent. For checking several requests' tokens at once.
std::map<std::int64_t, std::array<unsigned char, 32>> ActiveKeyHashes(pg::Connection& connection,
                                                                      const std::vector<std::int64_t>& key_ids);

/// True when `presented` (HashTokenSecret of a token's secret) equals `stored`, compared in constant time.
bool HashesMatch(const std::array<unsigned char, 32>& presented, const std::array<unsigned char, 32>& stored);

/// The stored hashes of recently seen keys (and the ids seen to have no active key), each trusted for `ttl` after it
/// was read: a request is admitted or refused from its headers without touching the database while its key's entry
/// is fresh, and a revocation holds on every server within `ttl`. At most `max_entries` ids (the table is emptied
/// when full: tokens with random key ids cost one lookup each, never memory). Thread-safe.
class KeyCache {
public:
    KeyCache(std::string secret_key, std::chrono::milliseconds ttl, std::size_t max_entries = 10'000);

    enum class Verdict { kValid, kInvalid, kUnknown };
    /// kValid / kInvalid when the token's key has a fresh entry; kUnknown when it must be read (Refresh). No I/O.
    /// With kValid, `scopes` (when given) receives the key's scopes.
    Verdict Check(const ParsedToken& token, std::vector<std::string>* scopes = nullptr) const;
    /// Reads the key's stored hash and scopes (eventlog.api_key_check, one statement on `session`) into the cache.
    void Refresh(pg::Connection& session, std::int64_t key_id);

private:
    struct Entry {
        std::optional<std::array<unsigned char, 32>> hash;  ///< nullopt: no active key with that id
        std::vector<std::string> scopes;
        std::chrono::steady_clock::time_point read_at;
    };
    const std::string secret_key_;
    const std::chrono::milliseconds ttl_;
    const std::size_t max_entries_;
    mutable std::mutex mutex_;
    std::unordered_map<std::int64_t, Entry> entries_;
};

}  // namespace eventlog::http
