// Shared text and time formats: UTF-8 validation, the wall clock in milliseconds, and
// RFC 3339 timestamps ("2026-11-30T06:30:00.123Z"), so every component reads and writes
// them the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace petchat::format {

// Length in bytes of the valid UTF-8 sequence at the start of `s` (1 to 4), or 0 if `s`
// is empty or does not start with one (bad lead byte, missing continuation, overlong
// two-byte form).
std::size_t utf8_sequence(std::string_view s) noexcept;

// Number of code points in `s`, or nullopt if it is not valid UTF-8.
std::optional<std::size_t> utf8_length(std::string_view s) noexcept;

// Number of code points of `s` if it is text fit to show as a name or a line of a profile:
// valid UTF-8 without control characters (C0, DEL and C1; a newline only where
// `multiline`), line or paragraph separators (U+2028, U+2029; allowed where `multiline`),
// or the direction embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069)
// that reorder the text after them. nullopt otherwise.
std::optional<std::size_t> plain_text_length(std::string_view s, bool multiline) noexcept;

// Whether valid UTF-8 `s` has a character that shows: not only spaces (of any width, and
// the blank fillers of Hangul and Braille) and the invisible characters clean_file_name
// replaces. A display name of nothing but those would read as no name.
bool shows_something(std::string_view s) noexcept;

// A file name a client declared, made safe to keep and to hand back (docs/PROTOCOL.md,
// "File names"): its last path component, control characters (C0 and C1), invisible
// direction and zero-width characters and "*:<>?|\" as '_',
// no leading dots or spaces, at most 255 bytes (cut at a character boundary). nullopt if
// `name` is not UTF-8.
std::optional<std::string> clean_file_name(std::string_view name);

// Milliseconds since the Unix epoch, from the system clock.
std::int64_t now_ms();

// URL-safe base64 without padding (RFC 4648 section 5): how ids and tokens are printed.
std::string base64url(std::string_view raw);
// The bytes of base64url text, or nullopt if it is not exactly that (padding, other
// characters or trailing bits are refused).
std::optional<std::string> from_base64url(std::string_view text);

// Lower-case hex of `bytes` (keys, for people and configs).
std::string hex(std::string_view bytes);
// The bytes of lower-case hex text, or nullopt if it is not exactly that.
std::optional<std::string> from_hex(std::string_view text);

// "YYYY-MM-DDTHH:MM:SS.mmmZ" in UTC.
std::string rfc3339(std::int64_t ms_since_epoch);

// Milliseconds since the epoch of an RFC 3339 date-time ("2026-11-30T06:30:00Z",
// "2026-11-30T07:30:00.5+01:00"): every field at its exact width, real calendar dates
// (no Feb 31), a Z or a numeric offset, fractions beyond milliseconds truncated, not
// before 1970. nullopt for anything else.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);

}  // namespace petchat::format
