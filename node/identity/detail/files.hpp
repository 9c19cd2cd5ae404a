// Durable small files of the data dir (region.key, region, datadir.json): written under a
// temporary name, fsync'd, renamed into place and the directory fsync'd, so a crash leaves
// either the old file or the new one, never a torn one.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string_view>

namespace petchat::identity::detail {

// "<path>: <what>: <strerror(errno)>".
std::runtime_error file_error(std::filesystem::path const& p, char const* what);

// Replaces `dir/name` with `bytes` (mode `mode`), durably. Throws file_error's error.
void write_durably(std::filesystem::path const& dir, std::string const& name, std::string_view bytes, unsigned mode);

}  // namespace petchat::identity::detail
