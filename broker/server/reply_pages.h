// ReplyPages: the broker's replies that grow with its state (`list`, and
// `services`) cut into pages that each fit in one datagram.
//
// A page request names the last entry the client has (its startAfter);
// the page holds the entries after it, in the reply's order, as many as
// fit, and says `more` when any are left. Each entry is counted as Cap'n
// Proto lays it out (EntryBytes), against what a page may hold
// (kPageEntryBytes). Every page holds at least one entry, so the longest
// entry a reply can have must fit in a page: a static_assert beside each
// reply's handler shows it does. A request without a page (a client older
// than pages) gets the whole reply if it fits in one page, else NeedsPages.
#ifndef CAPBROKER_BROKER_SERVER_REPLY_PAGES_H_
#define CAPBROKER_BROKER_SERVER_REPLY_PAGES_H_

#include <cstddef>
#include <initializer_list>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "capnp/common.h"
#include "capnp/blob.h"
#include "sdk/wire/limits.h"

namespace capbroker::server {

// What the entries of one page may take of its reply. The rest of the
// wire's limit is left for what is not an entry: the segment table (at
// most kMaxSegments sizes), the Reply and page structs, the entry list's
// tag word, and landing pads for their far pointers: a few hundred bytes,
// and 2 KiB are kept for them.
inline constexpr size_t kPageEntryBytes = wire::kMaxMessageBytes - 2048;

// A text field's bytes: its characters and a NUL, in whole words.
constexpr size_t TextBytes(size_t length) { return (length + 1 + 7) / 8 * 8; }

// What one entry, a `Struct` (a generated Cap'n Proto struct type) with
// text fields of `text_lengths` bytes, takes of a page: the struct, inline
// in the list, then each text with a far pointer's landing pad (8 bytes)
// in case the builder put the text in another segment than the list.
// Exact, but for the landing pads, which are counted whether or not they
// are needed.
template <typename Struct>
constexpr size_t EntryBytes(std::initializer_list<size_t> text_lengths) {
  using Layout = typename Struct::_capnpPrivate;
  size_t bytes = (Layout::dataWordSize + Layout::pointerCount) * sizeof(capnp::word);
  for (size_t length : text_lengths) bytes += 8 + TextBytes(length);
  return bytes;
}

// How much of a reply's candidates one page takes.
struct PageCut {
  size_t entries = 0;  // the first this many
  bool more = false;   // others are left for later pages
};

// Cuts a page from [begin, end): the candidates for it, in the reply's
// order, all after the page's startAfter. `bytes(candidate)` is what the
// candidate's entry takes (EntryBytes). Takes at least one, and then as
// many as fit in kPageEntryBytes.
template <typename Iterator, typename Bytes>
PageCut CutPage(Iterator begin, Iterator end, Bytes bytes) {
  PageCut cut;
  size_t used = 0;
  for (Iterator it = begin; it != end; ++it) {
    const size_t entry = bytes(*it);
    if (cut.entries > 0 && used + entry > kPageEntryBytes) {
      cut.more = true;  // `*it` is the next page's first
      break;
    }
    used += entry;
    ++cut.entries;
  }
  return cut;
}

// A page request's startAfter, checked: a name, at most
// wire::kMaxNameBytes (kInvalidArgument otherwise, naming `request`, the
// request's kind).
absl::StatusOr<absl::string_view> PageStart(capnp::Text::Reader start_after,
                                            absl::string_view request);

// The refusal of `what` (the capabilities a client may ask for, the
// services report) asked for whole, by a client older than pages, when it
// takes more than a page.
absl::Status NeedsPages(absl::string_view what);

}  // namespace capbroker::server

#endif  // CAPBROKER_BROKER_SERVER_REPLY_PAGES_H_
