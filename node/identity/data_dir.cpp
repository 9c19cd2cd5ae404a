// datadir.json: the data dir's region, format and age (identity.hpp, claim_data_dir).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include "base/format/format.hpp"
#include "node/identity/detail/files.hpp"
#include "node/identity/identity.hpp"

namespace petchat::identity {
namespace {

namespace json = boost::json;

constexpr char record_name[] = "datadir.json";

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

refusal damaged(std::filesystem::path const& path, std::string const& why) {
  return refusal(path.string() + " is damaged (" + why +
                 "): it says which region and store format the data dir holds; restore it from a "
                 "backup, or write it again by hand as {\"region\": \"<name>\", \"format\": " +
                 std::to_string(data_format) + ", \"created_at\": \"<RFC 3339 time>\"}");
}

// The file's text; nullopt only if it does not exist (any other failure throws: a record
// that cannot be read must not be taken for a missing one and written anew).
std::optional<std::string> read_text(std::filesystem::path const& path) {
  std::error_code ec;
  auto status = std::filesystem::symlink_status(path, ec);
  if (status.type() == std::filesystem::file_type::not_found) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw detail::file_error(path, "read");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

data_dir_record parse_record(std::filesystem::path const& path, std::string const& text) {
  boost::system::error_code ec;
  auto doc = json::parse(text, ec);
  if (ec || !doc.is_object()) throw damaged(path, "not a JSON object");
  auto const& o = doc.as_object();
  data_dir_record r;
  auto const* region = o.if_contains("region");
  auto const* format = o.if_contains("format");
  auto const* created = o.if_contains("created_at");
  // The format first: a newer one may lay out the rest differently (claim_data_dir says so).
  if (!format || !format->is_int64() || format->as_int64() < 0 || format->as_int64() > 1'000'000)
    throw damaged(path, "no format version");
  if (format->as_int64() > data_format) {
    r.format = static_cast<int>(format->as_int64());
    r.region = region && region->is_string() ? std::string(region->as_string()) : "";
    return r;
  }
  if (!region || !region->is_string() || region->as_string().empty()) throw damaged(path, "no region");
  std::optional<std::int64_t> at;
  if (created && created->is_string()) at = format::parse_rfc3339(std::string(created->as_string()));
  if (!at) throw damaged(path, "no created_at time");
  r.region = std::string(region->as_string());
  r.format = static_cast<int>(format->as_int64());
  r.created_at_ms = *at;
  return r;
}

void write_record(std::filesystem::path const& data_dir, data_dir_record const& r) {
  json::object o{{"region", r.region}, {"format", r.format}, {"created_at", format::rfc3339(r.created_at_ms)}};
  if (r.upgraded_from >= 0) o["upgraded_from"] = r.upgraded_from, o["upgraded_at"] = format::rfc3339(now_ms());
  detail::write_durably(data_dir, record_name, json::serialize(o) + "\n", 0600);
}

// Format 0 (only `region`): the record is new in format 1 and the stores did not change,
// so the migration writes it. The data dir's age is the region key's (made on its first
// start), or now when there is none.
data_dir_record upgrade_from_0(std::filesystem::path const& data_dir, std::string const& region) {
  data_dir_record r{region, data_format, now_ms(), 0};
  struct stat st {};
  if (::stat((data_dir / "region.key").c_str(), &st) == 0)
    r.created_at_ms = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1'000'000;
  return r;
}

void check_region(std::filesystem::path const& data_dir, std::string const& stored, std::string const& region) {
  if (stored == region) return;
  throw refusal(data_dir.string() + " holds the data of region '" + stored + "', not '" + region +
                "': start it with --region " + stored + " (or node.region = \"" + stored + "\"), or give region '" +
                region + "' a data dir of its own (" + (data_dir / record_name).string() +
                " says which region a data dir belongs to)");
}

}  // namespace

std::optional<data_dir_record> read_data_dir_record(std::filesystem::path const& data_dir) {
  auto path = data_dir / record_name;
  if (auto text = read_text(path)) return parse_record(path, *text);
  if (auto region = read_text(data_dir / "region")) {
    data_dir_record r;
    r.region = region->substr(0, region->find('\n'));
    r.format = 0;
    return r;
  }
  return std::nullopt;
}

bool restored_from_backup(std::filesystem::path const& data_dir) {
  return std::filesystem::exists(data_dir / restored_marker);
}

namespace {

void remove_marker(std::filesystem::path const& data_dir, char const* name) {
  auto path = data_dir / name;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw detail::file_error(path, "remove");
  int d = ::open(data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool synced = d >= 0 && ::fsync(d) == 0;
  if (d >= 0) ::close(d);
  if (!synced) throw detail::file_error(data_dir, "fsync");
}

}  // namespace

void forget_restored_marker(std::filesystem::path const& data_dir) {
  remove_marker(data_dir, restored_marker);
}

void mark_restored(std::filesystem::path const& data_dir) {
  detail::write_durably(data_dir, restored_marker, "", 0600);
  detail::write_durably(data_dir, restored_mailboxes_marker, "", 0600);
}

bool restored_mailboxes(std::filesystem::path const& data_dir) {
  return std::filesystem::exists(data_dir / restored_mailboxes_marker);
}

std::int64_t restored_backup_time_ms(std::filesystem::path const& data_dir) {
  auto text = read_text(data_dir / restored_mailboxes_marker);
  if (!text) return 0;
  auto end = text->find_last_not_of(" \n");
  return format::parse_rfc3339(text->substr(0, end == std::string::npos ? 0 : end + 1)).value_or(0);
}

void forget_restored_mailboxes(std::filesystem::path const& data_dir) {
  remove_marker(data_dir, restored_mailboxes_marker);
}

data_dir_record claim_data_dir(std::filesystem::path const& data_dir, std::string const& region) {
  if (std::filesystem::exists(data_dir / "RESTORE-INCOMPLETE"))
    throw refusal(data_dir.string() +
                  " holds a restore that did not finish (petchatctl restore was interrupted): it may "
                  "lack accounts or messages. Restore the backup again into an empty directory");
  auto found = read_data_dir_record(data_dir);
  if (found && found->format > data_format)
    throw refusal(data_dir.string() + " has store format " + std::to_string(found->format) +
                  ", newer than this petchat-node understands (format " + std::to_string(data_format) +
                  "): it was written by a newer version. Run that version (or newer), or restore a "
                  "backup made by this one; the data dir was not changed");
  if (found) check_region(data_dir, found->region, region);
  if (found && found->format == data_format) return *found;
  data_dir_record r{region, data_format, now_ms(), -1};
  if (found && found->format == 0) r = upgrade_from_0(data_dir, region);
  // Formats 1 to 7 to 8: this build reads their stores as they are (a member's receipt
  // record is read before any delivered_batch; an entry without `then` is a run of one
  // event; a change stored in the entry itself is read as before), and the message service
  // indexes their asset references by conversation and their push targets by what they
  // push to and where when it opens them; the record says 8 so that an older build refuses
  // the data dir instead of misreading it (or leaving new targets out of the indexes).
  if (found && found->format >= 1 && found->format < data_format)
    r = data_dir_record{region, data_format, found->created_at_ms, found->format};
  // `region` first: a node before 0.2 started on this dir still refuses another region.
  detail::write_durably(data_dir, "region", region + "\n", 0644);
  write_record(data_dir, r);
  return r;
}

}  // namespace petchat::identity
