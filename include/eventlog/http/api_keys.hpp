#pragma once

#include <array>
#include <cstdint>
#include <eventlog/pg/connection.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
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

/// Creates a key named `name` (1-200 printable ASCII characters) through eventlog.api_key_create (eventlog_admin)
/// and returns its token, which is stored nowhere: only its HMAC is. Throws InvalidInputError for a bad or
/// duplicate name.
std::string CreateApiKey(pg::Connection& connection, std::string_view secret_key, std::string_view name);

/// One key as `apikey list` shows it (never its hash).
struct ApiKeyInfo {
    std::string name;
    std::string created_at;
    std::string revoked_at;  ///< "" while active.
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

}  // namespace eventlog::http
