#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

// Administrators' passwords (docs/admin-console.md): the rules a new password must pass and its argon2id hash
// (Debian's libargon2). Pure functions, thread-safe.

namespace eventlog::admin {

/// The shortest password accepted, in characters (UTF-8 code points).
inline constexpr std::size_t kMinPasswordLength = 10;
/// The longest password accepted, in bytes: bounds the work one login form costs before hashing.
inline constexpr std::size_t kMaxPasswordBytes = 1024;

/// The cost of a new hash. Defaults: OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane), about 30 ms on one core
/// of the CI machine: a login costs the server that much memory and time, so it stays cheap to serve and dear to
/// guess. Existing hashes keep the parameters they were made with (they are stored in the hash).
struct HashOptions {
    std::uint32_t memory_kib{19'456};  ///< m: memory in KiB.
    std::uint32_t iterations{2};       ///< t: passes over the memory.
    std::uint32_t parallelism{1};      ///< p: lanes.
};

/// Throws InvalidInputError (field "password") naming the first rule `password` breaks, in this order:
/// "too short" (fewer than kMinPasswordLength characters), "too long" (over kMaxPasswordBytes bytes), "entirely
/// numeric", "too similar to the username" (equal to it ignoring case, or containing it when it has at least 4
/// characters), "too common" (on the committed list, ignoring case). Returns when it breaks none.
void CheckPassword(std::string_view password, std::string_view username);

/// The argon2id hash of `password` with 16 random bytes of salt, as libargon2 encodes it:
/// "$argon2id$v=19$m=...,t=...,p=...$SALT$DIGEST" (base64 without padding, a 32-byte digest).
std::string HashPassword(std::string_view password, const HashOptions& options = {});

/// True when `password` matches `encoded` (an argon2id hash as HashPassword makes); false for anything else,
/// including a malformed or non-argon2id hash.
bool VerifyPassword(std::string_view password, std::string_view encoded);

/// The setting of an encoded hash: everything before its digest ("$argon2id$v=19$m=..,t=..,p=..$SALT").
std::string_view SettingOf(std::string_view encoded);

/// `password` hashed with the parameters and salt of `setting` (SettingOf a stored hash), encoded the same way: equal
/// to the stored hash exactly when the password is right. nullopt when `setting` is not an argon2id setting this
/// code makes (version 19, 8-64 bytes of salt, costs within bounds), so a forged setting cannot make it work hard.
std::optional<std::string> HashWithSetting(std::string_view password, std::string_view setting);

/// A fixed setting with the default costs, for hashing against when a username is unknown, so that the answer takes
/// as long as for a known one.
std::string_view DummySetting();

}  // namespace eventlog::admin
