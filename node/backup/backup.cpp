#include "node/backup/backup.hpp"

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <stdexcept>
#include <utility>

#include "base/format/format.hpp"
#include "node/messages/messages.hpp"
#include "node/users/users.hpp"

namespace petchat::backup {
namespace {

namespace fs = std::filesystem;

// The data dir's small files, copied (region.key and the push key keep their 0600).
constexpr char const* small_files[] = {"datadir.json", "region", "region.key", "region.pub", "vapid.pem"};

std::string snapshot_id(std::int64_t ms) {
  std::time_t t = ms / 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  unsigned char tag[2];
  randombytes_buf(tag, sizeof tag);
  return std::string(stamp) + "-" + format::hex({reinterpret_cast<char const*>(tag), sizeof tag});
}

// Every regular file under `dir`, relative, with its size.
std::vector<file> list_files(fs::path const& dir) {
  std::vector<file> out;
  for (auto const& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.push_back({fs::relative(e.path(), dir).generic_string(), e.file_size()});
  std::sort(out.begin(), out.end(), [](file const& a, file const& b) { return a.path < b.path; });
  return out;
}

// The assets' blobs (immutable, named by their hash), hard-linked. Unfinished uploads and
// temporary files are not part of a backup. The collector removes none from before the
// checkpoint until this is done (take); a file that vanishes anyway (quarantined by
// petchatctl assets verify) is skipped.
void link_blobs(fs::path const& from, fs::path const& to) {
  if (!fs::exists(from)) return;
  for (auto const& e : fs::recursive_directory_iterator(from)) {
    auto target = to / fs::relative(e.path(), from);
    std::error_code ec;
    if (e.is_directory(ec)) {
      fs::create_directories(target);
    } else if (e.is_regular_file(ec)) {
      fs::create_directories(target.parent_path());
      fs::create_hard_link(e.path(), target, ec);
      if (ec && ec != std::errc::no_such_file_or_directory) throw fs::filesystem_error("link a blob", e.path(), ec);
    }
  }
}

// An open snapshot older than this is taken to be an interrupted backup's and released by
// the next backup, so that its hard links do not pin replaced SST files for ever: well
// under a day, so that a daily backup after an interrupted one is never refused.
constexpr std::int64_t abandoned_after_ms = 6LL * 3600 * 1000;

}  // namespace

snapshots::snapshots(fs::path const& data_dir, users::user_service& users, messages::message_service& messages)
    : data_dir_(fs::absolute(data_dir)), root_(data_dir_ / "backups"), users_(users), messages_(messages) {
  std::error_code ec;
  fs::remove_all(root_, ec);
}

snapshot snapshots::take(std::string requester) {
  if (auto old = open(); old && format::now_ms() - old->made_at_ms > abandoned_after_ms) release(old->id);
  {
    std::lock_guard lock(mutex_);
    if (making_ || open_)
      throw busy_error(open_ ? "backup " + open_->id + " is open (made " + format::rfc3339(open_->made_at_ms) +
                                   "): another petchatctl backup is copying it, or one was interrupted "
                                   "(petchatctl backup --abort releases it)"
                             : "a backup is being made",
                       open_ ? open_->made_at_ms : format::now_ms());
    auto gone = std::find_if(gave_up_.begin(), gave_up_.end(), [&](auto const& g) { return g.first == requester; });
    if (!requester.empty() && gone != gave_up_.end()) {
      gave_up_.erase(gone);
      throw std::runtime_error("the backup was released by its requester before it was made");
    }
    making_ = true;
    making_requester_ = requester;
  }
  snapshot s;
  s.requester = std::move(requester);
  s.made_at_ms = format::now_ms();
  s.id = snapshot_id(s.made_at_ms);
  s.dir = root_ / s.id;
  try {
    fs::create_directories(s.dir);
    fs::permissions(root_, fs::perms::owner_all, fs::perm_options::replace);
    // No collected blob goes from before the checkpoint until the blobs are linked: a
    // message the checkpoint holds may have been deleted since, and its blob collected.
    auto& gate = messages_.blob_removals();
    if (!gate.hold(std::chrono::seconds(30)))
      throw std::runtime_error("the asset collector is removing files and did not finish in 30 s: try again");
    struct held {
      messages::blob_removal_gate& gate;
      ~held() { gate.release(); }
    } release_after{gate};
    messages_.checkpoint_to(s.dir / "messages");  // first: see backup.hpp
    fs::create_directory(s.dir / "users");
    users_.copy_store_to(s.dir / "users");
    link_blobs(data_dir_ / "assets" / "blobs", s.dir / "assets" / "blobs");
    for (auto const* name : small_files)
      if (fs::exists(data_dir_ / name)) fs::copy_file(data_dir_ / name, s.dir / name);
    s.files = list_files(s.dir);
    for (auto const& f : s.files) s.bytes += f.size;
  } catch (...) {
    std::error_code ec;
    fs::remove_all(s.dir, ec);
    std::lock_guard lock(mutex_);
    making_ = false;
    abandoned_ = false;  // the release asked for is done: the next backup must not be thrown away
    throw;
  }
  {
    std::lock_guard lock(mutex_);
    making_ = false;
    if (!std::exchange(abandoned_, false)) {
      open_ = s;
      return s;
    }
  }
  std::error_code ec;
  fs::remove_all(s.dir, ec);
  throw std::runtime_error(
      "the backup was released (petchatctl backup --abort, or its requester gave up) while "
      "it was being made");
}

bool snapshots::release(std::string const& id) {
  std::optional<snapshot> s;
  {
    std::lock_guard lock(mutex_);
    if (making_ && !open_ && id.empty()) return abandoned_ = true;
    if (!open_ || (!id.empty() && open_->id != id)) return false;
    s = std::move(open_);
    open_.reset();
  }
  std::error_code ec;
  fs::remove_all(s->dir, ec);
  return true;
}

bool snapshots::release_requested(std::string const& requester) {
  std::string id;
  {
    std::lock_guard lock(mutex_);
    if (requester.empty()) return false;
    if (making_ && !open_ && making_requester_ == requester) return abandoned_ = true;
    if (!open_ || open_->requester != requester) {
      // Its request may still be on its way: it makes nothing then.
      auto now = format::now_ms();
      std::erase_if(gave_up_, [&](auto const& g) { return now - g.second > 15 * 60 * 1000 || g.first == requester; });
      if (gave_up_.size() >= 64) gave_up_.erase(gave_up_.begin());
      gave_up_.emplace_back(requester, now);
      return false;
    }
    id = open_->id;
  }
  return release(id);
}

std::optional<snapshot> snapshots::open() const {
  std::lock_guard lock(mutex_);
  return open_;
}

}  // namespace petchat::backup
