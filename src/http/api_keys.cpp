#include <fmt/format.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <eventlog/core/error.hpp>
#include <eventlog/core/text.hpp>
#include <eventlog/http/api_keys.hpp>
#include <memory>
#include <string>

namespace eventlog::http {
namespace {

constexpr std::string_view kPrefix = "elk_";

std::optional<std::array<unsigned char, 32>> FromBase64Url(std::string_view text) {
    if (text.size() != 43) return std::nullopt;
    std::array<unsigned char, 32> out{};
    std::uint32_t buffer = 0;
    int bits = 0;
    std::size_t n = 0;
    for (const char c : text) {
        const char* p = std::char_traits<char>::find(kBase64UrlAlphabet.data(), 64, c);
        if (p == nullptr) return std::nullopt;
        buffer = (buffer << 6) | static_cast<std::uint32_t>(p - kBase64UrlAlphabet.data());
        bits += 6;
        if (bits >= 8) {
            if (n < out.size()) out[n] = static_cast<unsigned char>((buffer >> (bits - 8)) & 0xFF);
            ++n;
            bits -= 8;
        }
    }
    if (n != 32 || (buffer & ((1u << bits) - 1)) != 0) return std::nullopt;  // canonical: unused bits are zero
    return out;
}

std::string ByteaHex(const std::array<unsigned char, 32>& bytes) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "\\x";
    for (const unsigned char b : bytes) {
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 0x0F]);
    }
    return out;
}

std::optional<std::array<unsigned char, 32>> FromByteaHex(std::string_view text) {
    if (text.size() != 66 || text.substr(0, 2) != "\\x") return std::nullopt;
    std::array<unsigned char, 32> out{};
    for (std::size_t i = 0; i < 32; ++i) {
        unsigned value = 0;
        const auto [end, ec] = std::from_chars(text.data() + 2 + 2 * i, text.data() + 4 + 2 * i, value, 16);
        if (ec != std::errc() || end != text.data() + 4 + 2 * i) return std::nullopt;
        out[i] = static_cast<unsigned char>(value);
    }
    return out;
}

void CheckName(std::string_view name) {
    if (name.empty() || name.size() > 200) throw InvalidInputError("--name", "expected 1 to 200 characters");
    for (const char c : name) {
        if (c < 0x21 || c > 0x7E) throw InvalidInputError("--name", "expected printable ASCII without spaces");
    }
}

}  // namespace

void RequireSecretKey(std::string_view secret_key) {
    if (secret_key.empty()) {
        throw ConfigError(
            "SECRET_KEY: required for API keys and not set (set it in the environment or .env, e.g. 64 random "
            "hexadecimal characters; every server and `apikey create` must use the same value)");
    }
}

void RequireStrongSecretKey(std::string_view secret_key) {
    RequireSecretKey(secret_key);
    // An estimate from the character classes the value uses (as if each character were drawn at random from them)
    // and how many distinct characters it has: 64 hexadecimal digits (openssl rand -hex 32) pass, a phrase or a
    // repeated pattern does not.
    bool lower = false, upper = false, digit = false, other = false;
    std::array<bool, 256> seen{};
    std::size_t distinct = 0;
    for (const char ch : secret_key) {
        const auto c = static_cast<unsigned char>(ch);
        lower = lower || (c >= 'a' && c <= 'z');
        upper = upper || (c >= 'A' && c <= 'Z');
        digit = digit || (c >= '0' && c <= '9');
        other = other || !std::isalnum(c);
        if (!seen[c]) ++distinct;
        seen[c] = true;
    }
    const double alphabet = (lower ? 26 : 0) + (upper ? 26 : 0) + (digit ? 10 : 0) + (other ? 33 : 0);
    const double bits = static_cast<double>(secret_key.size()) * std::log2(std::max(2.0, alphabet));
    if (bits < 256 || distinct < 8) {
        throw ConfigError(
            "SECRET_KEY: expected at least 32 bytes of entropy (e.g. 64 hexadecimal characters from `openssl rand "
            "-hex 32`); the value set is too short or too uniform (it is never printed)");
    }
}

std::optional<ParsedToken> ParseToken(std::string_view token) {
    if (token.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
    token.remove_prefix(kPrefix.size());
    const auto underscore = token.find('_');
    if (underscore == std::string_view::npos || underscore == 0 || underscore > 18) return std::nullopt;
    ParsedToken parsed;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + underscore, parsed.key_id);
    if (ec != std::errc() || end != token.data() + underscore || parsed.key_id <= 0) return std::nullopt;
    const auto secret = FromBase64Url(token.substr(underscore + 1));
    if (!secret) return std::nullopt;
    parsed.secret = *secret;
    return parsed;
}

std::array<unsigned char, 32> HashTokenSecret(std::string_view secret_key,
                                              const std::array<unsigned char, 32>& secret) {
    RequireSecretKey(secret_key);
    // OpenSSL 3's one-shot HMAC() looks the algorithm up and keys a new context on every call: 7% of the server's CPU
    // under single-event load. Each thread keeps one context keyed with SECRET_KEY; re-initialising it without a key
    // reuses that key.
    struct Keyed {
        std::string key;
        std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> context{nullptr, &EVP_MAC_CTX_free};
    };
    static const std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)> kHmac(EVP_MAC_fetch(nullptr, "HMAC", nullptr),
                                                                         &EVP_MAC_free);
    thread_local Keyed keyed;
    const auto fail = [] { return Error(ErrorKind::kFatal, "api keys: HMAC-SHA256 failed"); };
    if (!keyed.context || keyed.key != secret_key) {
        if (!kHmac) throw fail();
        keyed.context.reset(EVP_MAC_CTX_new(kHmac.get()));
        keyed.key.clear();
        std::string digest = "SHA256";
        const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest.data(), 0),
                                     OSSL_PARAM_construct_end()};
        if (!keyed.context ||
            EVP_MAC_init(keyed.context.get(), reinterpret_cast<const unsigned char*>(secret_key.data()),
                         secret_key.size(), params) != 1) {
            keyed.context.reset();
            throw fail();
        }
        keyed.key = std::string(secret_key);
    } else if (EVP_MAC_init(keyed.context.get(), nullptr, 0, nullptr) != 1) {
        keyed.context.reset();
        throw fail();
    }
    std::array<unsigned char, 32> out{};
    std::size_t length = 0;
    if (EVP_MAC_update(keyed.context.get(), secret.data(), secret.size()) != 1 ||
        EVP_MAC_final(keyed.context.get(), out.data(), &length, out.size()) != 1 || length != out.size()) {
        keyed.context.reset();
        throw fail();
    }
    return out;
}

/// The elements of a PostgreSQL text[] literal of simple words ("{a,b}"), as the server prints it.
std::vector<std::string> WordsOfArray(std::string_view text) {
    std::vector<std::string> out;
    if (text.size() < 2) return out;
    text = text.substr(1, text.size() - 2);
    while (!text.empty()) {
        const auto comma = text.find(',');
        out.emplace_back(text.substr(0, comma));
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return out;
}

std::string CreateApiKeyWith(std::string_view secret_key, std::string_view name, const std::vector<std::string>& scopes,
                             const KeyStore& store) {
    RequireSecretKey(secret_key);
    CheckName(name);
    std::string scope_array = "{";
    for (const auto& scope : scopes) {
        if (scope != kScopeEventsWrite && scope != kScopeEventsRead && scope != kScopeUsersWrite) {
            throw InvalidInputError("--scope", "expected events:write, events:read or users:write");
        }
        if (scope_array.size() > 1) scope_array += ',';
        scope_array += scope;
    }
    scope_array += '}';
    if (scopes.empty()) {
        scope_array = fmt::format("{{{},{},{}}}", kScopeEventsWrite, kScopeEventsRead, kScopeUsersWrite);
    }
    std::array<unsigned char, 32> secret{};
    if (RAND_bytes(secret.data(), static_cast<int>(secret.size())) != 1) {
        throw Error(ErrorKind::kFatal, "api keys: RAND_bytes failed");
    }
    const std::string hash = ByteaHex(HashTokenSecret(secret_key, secret));
    std::int64_t key_id = 0;
    try {
        key_id = store(std::string(name), hash, scope_array);
    } catch (const Error& e) {
        if (e.Source() == ErrorSource::kPostgres && e.Code() == "23505") {
            throw InvalidInputError("--name", "a key with this name already exists");
        }
        throw;
    }
    return std::string(kPrefix) + std::to_string(key_id) + "_" + Base64Url(secret.data(), secret.size());
}

std::string CreateApiKey(pg::Connection& connection, std::string_view secret_key, std::string_view name,
                         const std::vector<std::string>& scopes) {
    return CreateApiKeyWith(secret_key, name, scopes,
                            [&](const std::string& key_name, const std::string& token_hash, const std::string& scope) {
                                return connection
                                    .Exec("SELECT eventlog.api_key_create($1, $2::bytea, $3::text[])",
                                          {key_name, token_hash, scope})
                                    .GetInt(0, 0);
                            });
}

std::vector<ApiKeyInfo> ListApiKeys(pg::Connection& connection) {
    const auto r = connection.Exec(
        "SELECT name, pg_catalog.to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "coalesce(pg_catalog.to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), scopes "
        "FROM eventlog.api_key_list()");
    std::vector<ApiKeyInfo> out;
    out.reserve(static_cast<std::size_t>(r.Rows()));
    for (int i = 0; i < r.Rows(); ++i) {
        out.push_back(
            {std::string(r.Get(i, 0)), std::string(r.Get(i, 1)), std::string(r.Get(i, 2)), WordsOfArray(r.Get(i, 3))});
    }
    return out;
}

bool RevokeApiKey(pg::Connection& connection, std::string_view name) {
    return connection.Exec("SELECT eventlog.api_key_revoke($1)", {name}).Get(0, 0) == "t";
}

bool VerifyToken(pg::Connection& connection, std::string_view secret_key, std::string_view token) {
    const auto parsed = ParseToken(token);
    if (!parsed) return false;
    const std::string id = std::to_string(parsed->key_id);
    const auto r = connection.Exec("SELECT eventlog.api_key_hash($1::bigint)", {id});
    if (r.Rows() != 1 || r.IsNull(0, 0)) return false;
    const auto stored = FromByteaHex(r.Get(0, 0));
    if (!stored) return false;
    return HashesMatch(HashTokenSecret(secret_key, parsed->secret), *stored);
}

std::map<std::int64_t, std::array<unsigned char, 32>> ActiveKeyHashes(pg::Connection& connection,
                                                                      const std::vector<std::int64_t>& key_ids) {
    std::string ids = "{";
    for (const auto id : key_ids) {
        if (ids.size() > 1) ids.push_back(',');
        ids += std::to_string(id);
    }
    ids.push_back('}');
    const auto r = connection.ExecPrepared(
        "eventlog_http_key_hashes",
        "SELECT k.id, eventlog.api_key_hash(k.id) FROM pg_catalog.unnest($1::bigint[]) AS k(id)", {ids});
    std::map<std::int64_t, std::array<unsigned char, 32>> out;
    for (int i = 0; i < r.Rows(); ++i) {
        if (r.IsNull(i, 1)) continue;
        if (const auto stored = FromByteaHex(r.Get(i, 1))) out[r.GetInt(i, 0)] = *stored;
    }
    return out;
}

bool HashesMatch(const std::array<unsigned char, 32>& presented, const std::array<unsigned char, 32>& stored) {
    return CRYPTO_memcmp(stored.data(), presented.data(), presented.size()) == 0;
}

KeyCache::KeyCache(std::string secret_key, std::chrono::milliseconds ttl, std::size_t max_entries)
    : secret_key_(std::move(secret_key)), ttl_(ttl), max_entries_(std::max<std::size_t>(1, max_entries)) {}

KeyCache::Verdict KeyCache::Check(const ParsedToken& token, std::vector<std::string>* scopes) const {
    std::optional<std::array<unsigned char, 32>> stored;
    {
        const std::lock_guard lock(mutex_);
        const auto it = entries_.find(token.key_id);
        if (it == entries_.end() || std::chrono::steady_clock::now() - it->second.read_at > ttl_) {
            return Verdict::kUnknown;
        }
        stored = it->second.hash;
        if (scopes != nullptr) *scopes = it->second.scopes;
    }
    if (!stored) return Verdict::kInvalid;
    return HashesMatch(HashTokenSecret(secret_key_, token.secret), *stored) ? Verdict::kValid : Verdict::kInvalid;
}

void KeyCache::Refresh(pg::Connection& session, std::int64_t key_id) {
    const auto r =
        session.Exec("SELECT token_hash, scopes FROM eventlog.api_key_check($1::bigint)", {std::to_string(key_id)});
    Entry entry;
    if (r.Rows() == 1 && !r.IsNull(0, 0)) {
        entry.hash = FromByteaHex(r.Get(0, 0));
        entry.scopes = WordsOfArray(r.Get(0, 1));
    }
    entry.read_at = std::chrono::steady_clock::now();
    const std::lock_guard lock(mutex_);
    if (entries_.size() >= max_entries_ && entries_.find(key_id) == entries_.end()) entries_.clear();
    entries_[key_id] = entry;
}

}  // namespace eventlog::http
