// The news of group sends, told to the listener per member: the sends that resume one after
// another (those of one group commit, which the sender's stream pipelines) are gathered
// until a handler posted behind them runs, so that each member's events of them reach the
// member's streams in one hop and leave in one write (docs/ARCHITECTURE.md, step 5).
#include <algorithm>
#include <boost/asio/post.hpp>
#include <string_view>
#include <unordered_map>

#include "node/messages/detail/service.hpp"

namespace petchat::messages {

void message_service::impl::after_group_send(std::vector<news> heads, client::message const& message,
                                             boost::asio::any_io_executor ex) {
  for (auto const& n : heads)
    if (n.event.kind_case() == records::stored_event::kMessageId) push.tell(n.user, n.seq);
  if (!listener) return;
  auto content = std::make_shared<ws::shared_content const>(message);
  {
    std::lock_guard lock(news_mutex);
    news_waiting.emplace_back(std::move(heads), std::move(content));
    if (news_flush_queued) return;
    news_flush_queued = true;
  }
  boost::asio::post(ex, [this] { flush_news(); });
}

void message_service::impl::flush_news() {
  decltype(news_waiting) taken;
  {
    std::lock_guard lock(news_mutex);
    taken.swap(news_waiting);
    news_flush_queued = false;
  }
  // Each member's events, members in the order they first appear.
  std::unordered_map<std::string_view, std::size_t> index;
  std::vector<std::pair<std::string_view, std::shared_ptr<ws::mailbox_events>>> members;
  for (auto const& [heads, content] : taken) {
    for (auto const& n : heads) {
      if (n.event.kind_case() != records::stored_event::kMessageId) {
        notify(n, content);
        continue;
      }
      auto [it, fresh] = index.try_emplace(n.user, members.size());
      if (fresh) members.emplace_back(n.user, std::make_shared<ws::mailbox_events>());
      members[it->second].second->emplace_back(n.seq, std::make_shared<ws::shared_event const>(n.seq, content));
    }
  }
  for (auto& [user, events] : members) {
    // Sends of different senders may resume in another order than their commits'.
    if (!std::is_sorted(events->begin(), events->end(), [](auto const& a, auto const& b) { return a.first < b.first; }))
      std::sort(events->begin(), events->end(), [](auto const& a, auto const& b) { return a.first < b.first; });
    listener->notify_mailbox_events(std::string(user), events);
  }
}

}  // namespace petchat::messages
