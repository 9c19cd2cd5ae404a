#include "node/ws/ws.hpp"

#include "node/format/format.hpp"

#include <chrono>

namespace petchat::ws {
namespace {

using format::now_ms;

client::server_frame presence_frame(std::string const& user, bool online, std::int64_t last_seen) {
  client::server_frame f;
  auto* p = f.mutable_presence();
  p->set_user_id(user);
  p->set_state(online ? client::ONLINE : client::OFFLINE);
  if (!online) p->set_last_seen_ms(last_seen);
  return f;
}

}  // namespace

ws_manager::ws_manager(std::size_t max_sessions_per_user,
                       std::function<std::vector<std::string>(std::string const&)> contacts_of)
    : max_sessions_(max_sessions_per_user), contacts_of_(std::move(contacts_of)) {}

errors::status ws_manager::attach(std::string const& user, std::shared_ptr<session_sink> const& sink) {
  bool first = false;
  {
    std::lock_guard lock(mutex_);
    auto& list = sessions_[user];
    std::erase_if(list, [](auto const& w) { return w.expired(); });
    if (list.size() >= max_sessions_)
      return errors::fail(errors::code::too_many_sessions,
                          "at most " + std::to_string(max_sessions_) + " connections per user");
    first = list.empty();
    list.push_back(sink);
  }
  if (first) broadcast_presence(user, true, 0);
  return errors::ok();
}

void ws_manager::detach(std::string const& user, session_sink const* sink) {
  bool last = false;
  std::int64_t at = now_ms();
  {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(user);
    if (it == sessions_.end()) return;
    std::erase_if(it->second, [&](auto const& w) {
      auto s = w.lock();
      return !s || s.get() == sink;
    });
    if (it->second.empty()) {
      sessions_.erase(it);
      last_seen_[user] = at;
      last = true;
    }
  }
  if (last) broadcast_presence(user, false, at);
}

std::vector<std::shared_ptr<session_sink>> ws_manager::sinks_of(std::string const& user) const {
  std::vector<std::shared_ptr<session_sink>> out;
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(user);
  if (it == sessions_.end()) return out;
  for (auto const& w : it->second)
    if (auto s = w.lock()) out.push_back(std::move(s));
  return out;
}

void ws_manager::notify_mailbox(std::string const& user, std::uint64_t head,
                                std::shared_ptr<client::event const> event) {
  for (auto const& s : sinks_of(user)) s->on_mailbox(head, event);
}

void ws_manager::relay_typing(std::string const& from, std::string const& to, std::string const& conversation_id,
                              bool active) {
  client::server_frame f;
  auto* t = f.mutable_typing();
  t->set_from(from);
  t->set_conversation_id(conversation_id);
  t->set_active(active);
  for (auto const& s : sinks_of(to)) s->on_frame(f);
}

presence_info ws_manager::presence(std::string const& user) const {
  std::lock_guard lock(mutex_);
  presence_info p;
  p.online = sessions_.count(user) > 0;
  if (auto it = last_seen_.find(user); it != last_seen_.end()) p.last_seen_ms = it->second;
  return p;
}

std::vector<client::server_frame> ws_manager::presence_of_contacts(std::string const& user) const {
  std::vector<client::server_frame> out;
  for (auto const& c : contacts_of_(user)) {
    auto p = presence(c);
    out.push_back(presence_frame(c, p.online, p.last_seen_ms));
  }
  return out;
}

void ws_manager::broadcast_presence(std::string const& user, bool online, std::int64_t at_ms) {
  auto frame = presence_frame(user, online, at_ms);
  for (auto const& c : contacts_of_(user))
    for (auto const& s : sinks_of(c)) s->on_frame(frame);
}

std::size_t ws_manager::sessions() const {
  std::lock_guard lock(mutex_);
  std::size_t n = 0;
  for (auto const& [u, list] : sessions_) n += list.size();
  return n;
}

}  // namespace petchat::ws
