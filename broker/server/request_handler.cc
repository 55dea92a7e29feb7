#include "broker/server/request_handler.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/caps/memory.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "broker/caps/open_path.h"
#include "broker/policy/load_notes.h"
#include "broker/server/reply_pages.h"
#include "sdk/base/escape.h"
#include "sdk/base/status_macros.h"
#include "sdk/base/syscall.h"
#include "sdk/wire/error_code.h"
#include "sdk/wire/limits.h"
#include "sdk/wire/request_text.h"

namespace capbroker::server {
namespace {

// The audit log's and the error messages' wording when no directory is set.
constexpr absl::string_view kNoServices = "this broker hosts no services";

// What a services report shows others than administrators in place of a
// text that may name the administrator's files (RequestHandler::Services).
constexpr absl::string_view kShownToAdministrators = "(shown to root and the broker's user)";

schema::Kind WireKind(Kind kind) {
  switch (kind) {
    case Kind::kFile: return schema::Kind::FILE;
    case Kind::kDirectory: return schema::Kind::DIRECTORY;
    case Kind::kMemory: return schema::Kind::MEMORY;
  }
  return schema::Kind::FILE;
}

bool KnownAccess(schema::Access access) {
  return static_cast<uint16_t>(access) <= static_cast<uint16_t>(schema::Access::APPEND);
}

absl::string_view View(capnp::Text::Reader text) {
  return absl::string_view(text.cStr(), text.size());
}

// The first `keep` bytes of `text` (fewer, so as not to end within a UTF-8
// character), then "... (truncated; N bytes`more`)", N the length of `text`.
std::string Truncated(absl::string_view text, size_t keep, absl::string_view more = "") {
  size_t cut = std::min(keep, text.size());
  // Not within a UTF-8 sequence: back to the start of the character.
  while (cut > 0 && cut < text.size() &&
         (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) {
    --cut;
  }
  return absl::StrCat(text.substr(0, cut), "... (truncated; ", text.size(), " bytes", more,
                      ")");
}

// What an audit line shows of a client's name or path field: the field as
// sent, or, when it is longer than `max_bytes` (the request is refused for
// that), its first `max_bytes` bytes, cut at a character boundary, then
// "... (truncated; N bytes)". A client must not make the broker write a
// line as long as its request (64 KiB), and since no value over the limit
// is ever accepted, a shown value over it is always a cut one. `storage`
// holds the cut text.
absl::string_view Audited(absl::string_view text, size_t max_bytes, std::string& storage) {
  if (text.size() <= max_bytes) return text;
  storage = Truncated(text, max_bytes);
  return storage;
}

// Holds a text of a reply to `max_bytes`: a longer one is cut (Truncated,
// with `more`), the mark included in the bound.
void Bound(std::string& text, size_t max_bytes, absl::string_view more = "") {
  if (text.size() <= max_bytes) return;
  // The mark alone (nothing kept) is as long as the mark of the cut text.
  const size_t mark = Truncated(text, 0, more).size();
  text = Truncated(text, max_bytes - mark, more);
}

// The most bytes of an audit line's reason (before JSON escaping); a
// longer one is cut (Bound). A denial names a few principals at most
// (kMaxNamedPrincipals), but its reason can quote an exe path (up to
// PATH_MAX) besides, and a connect refused because its service could not
// start keeps the service's whole error (WithAuditReason), which can quote
// several paths: a client must not be able to make the broker write lines
// as long as it likes. The broker's standard error has a service's errors
// whole.
constexpr size_t kMaxAuditReasonBytes = 8192;

// Why a request was granted, for the audit line.
std::string GrantReason(const Identity& identity, absl::string_view request_kind,
                        absl::string_view principal, absl::string_view capability) {
  absl::string_view role = identity.service.empty() ? "principal" : "service";
  if (request_kind == "connect") {
    return absl::StrCat(role, " '", principal, "' may connect to '", capability, "'");
  }
  if (identity.service.empty()) {
    return absl::StrCat("principal '", principal, "' grants '", capability, "'");
  }
  return absl::StrCat("service '", principal, "' is granted '", capability, "'");
}

// What one entry of a list page takes (reply_pages.h).
constexpr size_t ListEntryBytes(size_t name_bytes, size_t path_bytes) {
  return EntryBytes<schema::CapabilitySummary>({name_bytes, path_bytes});
}

// The policy validator holds names and paths to the wire's limits (a
// static_assert in policy_validator.cc ties the two), so the longest entry
// a policy can hold fits in a page: every page has at least one entry.
static_assert(ListEntryBytes(wire::kMaxNameBytes, wire::kMaxPathBytes) <= kPageEntryBytes,
              "a page must hold the longest entry a policy can have");

// What one entry of a services page takes: the name, then protections,
// missing, lastExit and activation.
size_t ServiceEntryBytes(const ServiceReport& r) {
  return EntryBytes<schema::ServiceInfo>({r.name.size(), r.protections.size(), r.missing.size(),
                                          r.last_exit.size(), r.activation.size()});
}

// A service's name is a policy's (held to the wire's limit, as for a
// list), and the handler cuts its texts to wire::kMaxServiceTextBytes, so
// the longest entry fits in a page: every page has at least one.
static_assert(EntryBytes<schema::ServiceInfo>({wire::kMaxNameBytes, wire::kMaxServiceTextBytes,
                                               wire::kMaxServiceTextBytes,
                                               wire::kMaxServiceTextBytes,
                                               wire::kMaxServiceTextBytes}) <= kPageEntryBytes,
              "a page must hold the longest services entry");

// The order of a services report: by name, then the policy's instance
// before one removed from it.
bool ServiceBefore(absl::string_view name, bool removed, const ServiceReport& r) {
  return name != r.name ? name < r.name : removed < r.removed;
}

// Fills a list entry for `spec`.
void SetSummary(const CapabilitySpec& spec, schema::CapabilitySummary::Builder item) {
  item.setName(spec.name);
  item.setKind(WireKind(spec.kind));
  item.setAccess(spec.kind == Kind::kMemory ? schema::Access::READ_WRITE : spec.access);
  item.setPath(spec.path);
  item.setSize(spec.size);
}

bool IsDirectoryFd(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
}

// A hosted service gets its directory grants at start, as bind mounts inside
// its sandbox. A directory fd made here lives in the broker's mount
// namespace: `..` from it walks the host's tree, where Landlock does not stop
// connect() to a host socket (and nothing stops anything with Landlock off).
absl::Status ServiceDirectoryRefusal(absl::string_view capability) {
  return absl::PermissionDeniedError(absl::StrCat(
      "a service receives directory '", capability,
      "' at start, inside its sandbox (LISTEN_FDNAMES); a directory fd from the "
      "broker would reach outside the sandbox, so none is given at run time"));
}

// What the open `how` of a grant does besides opening (create with its
// mode, truncate), and whether it made the file (`effects`), for its audit
// line: the one way acquire, openBeneath and start grants fill it.
audit::OpenOptions OpenOptionsOf(const caps::FileOpen& how, const caps::OpenEffects& effects) {
  audit::OpenOptions open;
  open.create = how.create;
  open.mode = how.mode & 0777;
  open.truncate = how.truncate;
  open.created = effects.created();
  return open;
}

}  // namespace

RequestHandler::RequestHandler(audit::AuditLog& audit, Stats& stats, uid_t broker_uid,
                               caps::HardLinks hard_links)
    : audit_(audit), stats_(stats), broker_uid_(broker_uid), hard_links_(hard_links) {}

absl::Status RequestHandler::SetPolicy(Policy policy) {
  absl::flat_hash_map<std::string, std::shared_ptr<const UniqueFd>> shared;
  for (const CapabilitySpec& spec : policy.capabilities()) {
    if (spec.kind != Kind::kMemory || !spec.shared) continue;
    const CapabilitySpec* current = policy_.FindCapability(spec.name);
    auto kept = shared_memory_.find(spec.name);
    if (current != nullptr && current->kind == Kind::kMemory && current->shared &&
        current->size == spec.size && kept != shared_memory_.end()) {
      shared[spec.name] = kept->second;  // the same memfd: holders keep sharing
      continue;
    }
    absl::StatusOr<UniqueFd> fd = caps::CreateSealedMemfd(spec.name, spec.size);
    if (!fd.ok()) {
      return absl::Status(fd.status().code(),
                          absl::StrCat("shared memory capability '", spec.name,
                                       "': ", fd.status().message()));
    }
    shared[spec.name] = std::make_shared<const UniqueFd>(std::move(fd).value());
  }
  policy_ = std::move(policy);
  shared_memory_ = std::move(shared);
  const std::vector<CapabilitySpec>& capabilities = policy_.capabilities();
  by_name_.resize(capabilities.size());
  std::iota(by_name_.begin(), by_name_.end(), size_t{0});
  std::sort(by_name_.begin(), by_name_.end(), [&](size_t a, size_t b) {
    return capabilities[a].name < capabilities[b].name;
  });
  ++stats_.policy_generation;
  // At start and at every reload (load_notes.h): the capabilities whose
  // opens could stall this thread, and the exe rules that can never match.
  for (const std::string& note : LoadNotes(policy_)) {
    std::fprintf(stderr, "capbrokerd: note: %s\n", Escaped(note).c_str());
  }
  return absl::OkStatus();
}

void RequestHandler::SetError(schema::Reply::Builder reply,
                              const absl::Status& status) {
  auto error = reply.initError();
  error.setCode(wire::ToErrorCode(status.code()));
  error.setMessage(std::string(status.message()));
}

void RequestHandler::CountDenial(const absl::Status& status) {
  ++stats_.denials;
  ++stats_.denials_by_reason[std::string(
      wire::ErrorCodeName(wire::ToErrorCode(status.code())))];
}

void RequestHandler::DenyRequest(const Session& session, absl::string_view request_kind,
                                 const absl::Status& status) {
  Record(session, request_kind, "", "", "", status, "", {}, Budget::kCounted);
}

void RequestHandler::Deny(const Session& session, absl::string_view request_kind,
                          const absl::Status& status, schema::Reply::Builder reply) {
  DenyRequest(session, request_kind, status);
  SetError(reply, status);
}

Outcome RequestHandler::Handle(Session& session, schema::Request::Reader request,
                               schema::Reply::Builder reply) {
  reply.setId(request.getId());
  absl::Status invalid;
  if (request.getId() == 0) {
    invalid = absl::InvalidArgumentError("request id 0 is reserved; use a nonzero id");
  } else if (request.hasFds() && request.getFds().size() != 0) {
    invalid = absl::InvalidArgumentError("requests carry no fds");
  }
  if (!invalid.ok()) {
    Deny(session, "invalid", invalid, reply);
    return {};
  }
  if (request.isHello()) return Hello(session, request.getHello(), reply);
  if (!session.hello_done) {
    Deny(session, "invalid",
         absl::InvalidArgumentError("the first request on a connection must be hello"), reply);
    Outcome outcome;
    outcome.close_after_reply = true;
    return outcome;
  }
  switch (request.which()) {
    case schema::Request::ACQUIRE:
      return Acquire(session, request.getAcquire(), reply);
    case schema::Request::OPEN_BENEATH:
      return OpenBeneath(session, request.getOpenBeneath(), reply);
    case schema::Request::LIST:
      List(session, request, reply);
      return {};
    case schema::Request::STATUS:
      Status(session, reply);
      return {};
    case schema::Request::CONNECT:
      return Connect(session, request.getId(), request.getConnect(), reply);
    case schema::Request::READY:
      return Ready(session, reply);
    case schema::Request::SERVICES:
      Services(session, request, reply);
      return {};
    default:
      break;
  }
  Deny(session, "invalid",
       absl::InvalidArgumentError(absl::StrCat(
           "unknown request kind ", static_cast<int>(request.which()),
           "; this broker speaks protocol version ", schema::PROTOCOL_VERSION)),
       reply);
  return {};
}

Outcome RequestHandler::Hello(Session& session, schema::Hello::Reader hello,
                              schema::Reply::Builder reply) {
  Outcome outcome;
  absl::Status status;
  if (session.hello_done) {
    status = absl::InvalidArgumentError("hello was already done on this connection");
  } else if (hello.getVersion() != schema::PROTOCOL_VERSION) {
    status = absl::UnimplementedError(absl::StrCat(
        "this broker speaks protocol version ", schema::PROTOCOL_VERSION,
        "; the client asked for version ", hello.getVersion()));
    outcome.close_after_reply = true;
  }
  if (!status.ok()) {
    Deny(session, "hello", status, reply);
    return outcome;
  }
  session.hello_done = true;
  auto out = reply.initHello();
  out.setVersion(schema::PROTOCOL_VERSION);
  const Identity& id = session.identity;
  out.setUid(id.uid);
  out.setGid(id.gid);
  out.setPid(id.pid);
  out.setExe(id.exe);
  // The first few, counting the rest: all of them may not fit in a
  // datagram (kMaxNamedPrincipals).
  std::vector<std::string> matching = policy_.PrincipalNames(id);
  const size_t named = std::min(matching.size(), kMaxNamedPrincipals);
  auto names = out.initPrincipals(named);
  for (size_t i = 0; i < named; ++i) names.set(i, matching[i]);
  out.setMorePrincipals(static_cast<uint32_t>(matching.size() - named));
  return outcome;
}

absl::StatusOr<UniqueFd> RequestHandler::Make(const CapabilitySpec& spec,
                                              schema::Access access,
                                              caps::OpenEffects& effects,
                                              audit::OpenOptions& open) {
  switch (spec.kind) {
    case Kind::kFile: {
      caps::FileOpen how;
      how.access = access;
      // The policy's create and truncate serve writers: a read grant never
      // creates or empties the file (O_RDONLY | O_TRUNC does truncate on
      // Linux), and an append grant never empties it.
      how.create = spec.create && access != schema::Access::READ;
      how.truncate = spec.truncate && (access == schema::Access::WRITE ||
                                       access == schema::Access::READ_WRITE);
      how.mode = spec.mode;
      // An append grant must hold against its holder (see FileOpen). A
      // client that asks for append under a write grant restricts itself:
      // that fd is O_APPEND only, as it asked.
      how.append_only = spec.access == schema::Access::APPEND;
      absl::StatusOr<UniqueFd> fd =
          caps::OpenFile(spec.path, how, spec.follow_symlinks, hard_links_, &effects);
      open = OpenOptionsOf(how, effects);
      return fd;
    }
    case Kind::kDirectory:
      return caps::OpenDirectory(spec.path, spec.follow_symlinks);
    case Kind::kMemory: {
      if (!spec.shared) {
        CB_ASSIGN_OR_RETURN(UniqueFd fd, caps::CreateSealedMemfd(spec.name, spec.size));
        if (access == schema::Access::READ) return caps::ReopenReadOnly(fd.get());
        return fd;
      }
      auto it = shared_memory_.find(spec.name);
      if (it == shared_memory_.end()) {
        return absl::InternalError("shared memory was not prepared");
      }
      // Read-only: a new open file description. Read-write grants borrow
      // the broker's own fd (see Acquire).
      return caps::ReopenReadOnly(it->second->get());
    }
  }
  return absl::InternalError("unknown capability kind");
}

void RequestHandler::SetGranted(const CapabilitySpec& spec, schema::Access access,
                                schema::Reply::Builder reply) {
  reply.setGranted();
  auto info = reply.initFds(1)[0];
  info.setName(spec.name);
  info.setKind(WireKind(spec.kind));
  info.setAccess(access);
  info.setSize(spec.size);
}

Outcome RequestHandler::Acquire(const Session& session,
                                schema::Acquire::Reader acquire,
                                schema::Reply::Builder reply) {
  Outcome outcome;
  absl::string_view name = View(acquire.getName());
  schema::Access requested = acquire.getAccess();
  absl::Status status = wire::CheckCapabilityName(name);
  if (status.ok() && !KnownAccess(requested)) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "unknown access value ", static_cast<int>(requested)));
  }
  if (!status.ok()) {
    std::string cut;
    Finish(session, "acquire", Audited(name, wire::kMaxNameBytes, cut), requested, "",
           status, "", reply);
    return outcome;
  }
  Decision decision = policy_.Decide(session.identity, name, requested);
  if (!decision.status.ok()) {
    Finish(session, "acquire", name, requested, "", decision.status,
           decision.principal, reply);
    return outcome;
  }
  const CapabilitySpec& spec = *decision.capability;
  if (spec.kind == Kind::kDirectory && !session.identity.service.empty()) {
    Finish(session, "acquire", name, decision.access, "", ServiceDirectoryRefusal(spec.name),
           decision.principal, reply);
    return outcome;
  }
  if (spec.kind == Kind::kMemory && spec.shared && decision.access != schema::Access::READ) {
    // The broker's own open file description, shared by every readWrite
    // grantee (see Outcome::shared_fd).
    outcome.shared_fd = shared_memory_[spec.name];
    SetGranted(spec, decision.access, reply);
    outcome.audit_line = Finish(session, "acquire", name, decision.access, "",
                                absl::OkStatus(), decision.principal, reply);
    outcome.principal = std::move(decision.principal);
    return outcome;
  }
  // A file's open: what it does besides opening goes on its line, as an
  // open beneath's does.
  audit::OpenOptions open;
  absl::StatusOr<UniqueFd> fd = Make(spec, decision.access, outcome.effects, open);
  if (!fd.ok()) {
    status = absl::Status(fd.status().code(),
                          absl::StrCat("capability '", spec.name, "': ",
                                       fd.status().message()));
    Finish(session, "acquire", name, decision.access, "", status,
           decision.principal, reply, open);
    return outcome;
  }
  SetGranted(spec, decision.access, reply);
  outcome.fds.push_back(std::move(fd).value());
  outcome.audit_line = Finish(session, "acquire", name, decision.access, "",
                              absl::OkStatus(), decision.principal, reply, open);
  outcome.principal = std::move(decision.principal);
  outcome.open = open;
  return outcome;
}

Outcome RequestHandler::OpenBeneath(const Session& session,
                                    schema::OpenBeneath::Reader open,
                                    schema::Reply::Builder reply) {
  Outcome outcome;
  absl::string_view name = View(open.getDirectory());
  absl::string_view path = View(open.getPath());
  schema::Access requested = open.getAccess();
  // What the open does besides opening, for its audit line, denied or not.
  audit::OpenOptions asked;
  asked.create = open.getCreate();
  asked.mode = open.getMode() & 0777;
  asked.truncate = open.getTruncate();
  absl::Status status = wire::CheckDirectoryName(name);
  if (status.ok()) status = wire::CheckBeneathPath(path);
  if (status.ok() && !KnownAccess(requested)) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "unknown access value ", static_cast<int>(requested)));
  }
  if (!status.ok()) {
    std::string cut_name, cut_path;
    Finish(session, "openBeneath", Audited(name, wire::kMaxNameBytes, cut_name), requested,
           Audited(path, wire::kMaxPathBytes, cut_path), status, "", reply, asked);
    return outcome;
  }
  Decision decision = policy_.Decide(session.identity, name, requested);
  if (decision.status.ok() && decision.capability->kind != Kind::kDirectory) {
    decision.status = absl::InvalidArgumentError(absl::StrCat(
        "'", name, "' is not a directory capability; open beneath needs one"));
  }
  schema::Access access = decision.access;
  // The rules of a file capability's create and truncate (policy_validator):
  // a reader creates nothing, and only a writer that may overwrite may
  // empty a file; an append fd must never destroy what is there.
  if (decision.status.ok() && asked.create && access == schema::Access::READ) {
    decision.status = absl::InvalidArgumentError(
        "create needs write, readWrite or append access; access is read");
  } else if (decision.status.ok() && asked.truncate &&
             access != schema::Access::WRITE && access != schema::Access::READ_WRITE) {
    decision.status = absl::InvalidArgumentError(absl::StrCat(
        "truncate needs write or readWrite access; access is ", AccessName(access),
        access == schema::Access::APPEND ? " (an append fd must not destroy contents)" : ""));
  }
  if (!decision.status.ok()) {
    Finish(session, "openBeneath", name, requested, path, decision.status,
           decision.principal, reply, asked);
    return outcome;
  }
  caps::FileOpen how;
  // A directory grant's readWrite, asked for as-is, opens files read-write.
  how.access = access;
  how.create = asked.create;
  how.truncate = asked.truncate;
  how.mode = asked.mode;
  absl::StatusOr<UniqueFd> fd =
      caps::OpenDirectory(decision.capability->path,
                          decision.capability->follow_symlinks);
  if (fd.ok()) fd = caps::OpenBeneath(fd->get(), path, how, hard_links_, &outcome.effects);
  asked = OpenOptionsOf(how, outcome.effects);
  // A directory: an open that neither creates nor truncates (caps::
  // OpenBeneath), so it left nothing to undo.
  if (fd.ok() && !session.identity.service.empty() && IsDirectoryFd(fd->get())) {
    fd = ServiceDirectoryRefusal(name);
  }
  if (!fd.ok()) {
    status = absl::Status(fd.status().code(),
                          absl::StrCat("capability '", name, "': ",
                                       fd.status().message()));
    Finish(session, "openBeneath", name, access, path, status,
           decision.principal, reply, asked);
    return outcome;
  }
  reply.setGranted();
  auto info = reply.initFds(1)[0];
  info.setName(decision.capability->name);
  info.setKind(IsDirectoryFd(fd->get()) ? schema::Kind::DIRECTORY : schema::Kind::FILE);
  info.setAccess(access);
  info.setPath(std::string(path));
  outcome.fds.push_back(std::move(fd).value());
  outcome.audit_line = Finish(session, "openBeneath", name, access, path,
                              absl::OkStatus(), decision.principal, reply, asked);
  outcome.principal = std::move(decision.principal);
  outcome.open = asked;
  return outcome;
}

void RequestHandler::List(const Session& session, schema::Request::Reader request,
                          schema::Reply::Builder reply) {
  // A client older than pages asks without listPage: its reply is `list`,
  // whole, or an error when the list takes more than a page.
  const bool paged = request.hasListPage();
  absl::string_view start_after;
  if (paged) {
    absl::StatusOr<absl::string_view> start =
        PageStart(request.getListPage().getStartAfter(), "list");
    if (!start.ok()) return Deny(session, "list", start.status(), reply);
    start_after = *start;
  }
  // The union of the grants of every matching principal (or the service's
  // own grants). A service's directory grants are left out: it has them at
  // start, inside its sandbox, and is refused them at run time
  // (ServiceDirectoryRefusal), so its list would only show it their host
  // paths.
  const std::vector<CapabilitySpec>& capabilities = policy_.capabilities();
  std::vector<bool> granted(capabilities.size(), false);
  if (const ServiceSpec* service = policy_.FindService(session.identity.service);
      !session.identity.service.empty() && service != nullptr) {
    for (size_t index : service->grants) {
      granted[index] = capabilities[index].kind != Kind::kDirectory;
    }
  }
  for (const PrincipalSpec* p : policy_.MatchingPrincipals(session.identity)) {
    for (size_t index : p->grants) granted[index] = true;
  }
  // The candidates: the granted capabilities named after start_after, in
  // name order.
  std::vector<const CapabilitySpec*> after;
  for (auto next = std::upper_bound(by_name_.begin(), by_name_.end(), start_after,
                                    [&](absl::string_view start, size_t index) {
                                      return start < capabilities[index].name;
                                    });
       next != by_name_.end(); ++next) {
    if (granted[*next]) after.push_back(&capabilities[*next]);
  }
  const PageCut cut = CutPage(after.begin(), after.end(), [](const CapabilitySpec* spec) {
    return ListEntryBytes(spec->name.size(), spec->path.size());
  });
  if (!paged && cut.more) {
    return Deny(session, "list", NeedsPages("the capabilities this client may ask for"), reply);
  }
  auto entries = paged ? reply.initCapabilities().initEntries(cut.entries)
                       : reply.initList(cut.entries);
  for (size_t i = 0; i < cut.entries; ++i) SetSummary(*after[i], entries[i]);
  if (paged) reply.getCapabilities().setMore(cut.more);
}

Outcome RequestHandler::Connect(const Session& session, uint64_t request_id,
                                schema::Connect::Reader connect,
                                schema::Reply::Builder reply) {
  Outcome outcome;
  absl::string_view name = View(connect.getService());
  absl::Status status = wire::CheckServiceName(name);
  ConnectDecision decision;
  if (status.ok()) {
    decision = policy_.DecideConnect(session.identity, name);
    status = decision.status;
  }
  if (status.ok() && services_ == nullptr) status = absl::UnavailableError(kNoServices);
  absl::StatusOr<std::optional<UniqueFd>> end = std::optional<UniqueFd>();
  if (status.ok()) {
    end = services_->Connect(*decision.service,
                             ConnectRequest{session.connection_id, request_id,
                                            session.identity, decision.principal,
                                            IsAdministrator(session)});
    status = end.status();
  }
  if (status.ok() && !end->has_value()) {
    // Granted; the host answers once the service is ready.
    outcome.deferred = true;
  } else if (status.ok()) {
    reply.setGranted();
    SetConnection(name, reply);
    outcome.fds.push_back(std::move(**end));
  }
  std::string cut;
  uint64_t line = Finish(session, "connect", Audited(name, wire::kMaxNameBytes, cut),
                         schema::Access::READ_WRITE, "", status, decision.principal, reply);
  // The loop sees a grant's line written before it is delivered, or, for a
  // deferred connect, before it waits in the service host.
  if (!outcome.fds.empty() || outcome.deferred) outcome.audit_line = line;
  if (!outcome.fds.empty()) outcome.principal = std::move(decision.principal);
  return outcome;
}

void RequestHandler::UndoEffects(absl::Span<caps::OpenEffects> effects) {
  for (caps::OpenEffects& left : effects) {
    if (absl::Status undone = left.Undo(); !undone.ok()) {
      std::fprintf(stderr,
                   "capbrokerd: could not remove the file made for a grant that is not on "
                   "record: %s; remove it\n",
                   Escaped(undone.message()).c_str());
    }
  }
}

void RequestHandler::WithdrawConnect(uint64_t connection_id, uint64_t request_id) {
  if (services_ != nullptr) services_->Withdraw(connection_id, request_id);
}

void RequestHandler::ServiceConnectionLost(uint64_t connection_id) {
  if (services_ != nullptr) services_->ConnectionLost(connection_id);
}

void RequestHandler::ClientConnectionClosed(uint64_t connection_id, absl::string_view why) {
  if (services_ != nullptr) services_->ClientGone(connection_id, why);
}

void RequestHandler::AnswerWaitingConnects(const Session& session) {
  if (services_ != nullptr && !session.identity.service.empty()) {
    services_->AnswerWaiting(session.identity.service);
  }
}

void RequestHandler::SetConnection(absl::string_view service,
                                   schema::Reply::Builder reply) {
  auto info = reply.initFds(1)[0];
  info.setName(std::string(service));
  info.setKind(schema::Kind::CONNECTION);
  info.setAccess(schema::Access::READ_WRITE);
}

Outcome RequestHandler::Ready(const Session& session, schema::Reply::Builder reply) {
  absl::Status status;
  if (session.identity.service.empty()) {
    status = absl::InvalidArgumentError("only a hosted service can say it is ready");
  } else if (services_ == nullptr) {
    status = absl::UnavailableError(kNoServices);
  } else {
    status = services_->Ready(session.identity.service);
  }
  if (!status.ok()) {
    Deny(session, "ready", status, reply);
    return {};
  }
  reply.setReady();
  Outcome outcome;
  outcome.answer_waiting = true;
  return outcome;
}

void RequestHandler::Services(const Session& session, schema::Request::Reader request,
                              schema::Reply::Builder reply) {
  // As for List: a client older than pages asks without servicesPage.
  const bool paged = request.hasServicesPage();
  absl::string_view start_after;
  bool start_after_removed = false;
  if (paged) {
    absl::StatusOr<absl::string_view> start =
        PageStart(request.getServicesPage().getStartAfter(), "services");
    if (!start.ok()) return Deny(session, "services", start.status(), reply);
    start_after = *start;
    start_after_removed = request.getServicesPage().getStartAfterRemoved();
  }
  std::vector<ServiceReport> reports;
  if (services_ != nullptr) reports = services_->Report();
  // Why a service failed, or lacks a protection, can quote capability
  // paths and the policy's own ("directory grant 'conf' is /x/etc, which
  // holds the broker's policy file ..."): shown to whom `status` shows the
  // policy's path. Replaced before the pages are cut, which measure the
  // texts sent.
  const bool administrator = IsAdministrator(session);
  for (ServiceReport& r : reports) {
    if (!administrator) {
      for (std::string* text : {&r.missing, &r.last_exit}) {
        if (!text->empty()) *text = std::string(kShownToAdministrators);
      }
    }
    if (r.waits_for_removed_instance) {
      absl::StrAppend(&r.last_exit, r.last_exit.empty() ? "" : "; ",
                      "waits for its old instance to exit, then starts");
    }
    for (std::string* text : {&r.protections, &r.missing, &r.last_exit, &r.activation}) {
      Bound(*text, wire::kMaxServiceTextBytes);
    }
  }
  std::sort(reports.begin(), reports.end(), [](const ServiceReport& a, const ServiceReport& b) {
    return ServiceBefore(a.name, a.removed, b);
  });
  // The candidates: the entries after the page's startAfter.
  auto after = std::upper_bound(
      reports.begin(), reports.end(), start_after,
      [&](absl::string_view start, const ServiceReport& r) {
        return ServiceBefore(start, start_after_removed, r);
      });
  const PageCut cut = CutPage(after, reports.end(), ServiceEntryBytes);
  if (!paged && cut.more) {
    return Deny(session, "services", NeedsPages("the services this broker reports"), reply);
  }
  auto entries = paged ? reply.initServicePage().initEntries(cut.entries)
                       : reply.initServices(cut.entries);
  for (size_t i = 0; i < cut.entries; ++i) {
    const ServiceReport& r = after[i];
    auto item = entries[i];
    item.setName(r.name);
    item.setState(r.state);
    item.setPid(r.pid);
    item.setRestarts(r.restarts);
    item.setUptimeSeconds(r.uptime_seconds);
    item.setProtections(r.protections);
    item.setMissing(r.missing);
    item.setLastExit(r.last_exit);
    item.setActivation(r.activation);
    item.setRemoved(r.removed);
  }
  if (paged) reply.getServicePage().setMore(cut.more);
}

absl::StatusOr<UniqueFd> RequestHandler::MakeForStart(const CapabilitySpec& capability,
                                                       const StartCheck& check,
                                                       caps::OpenEffects& effects,
                                                       audit::OpenOptions& open) {
  absl::StatusOr<UniqueFd> fd = absl::InternalError("not made");
  if (capability.kind == Kind::kMemory && capability.shared) {
    // A dup: the open file description every readWrite grantee shares (see
    // Outcome::shared_fd).
    auto it = shared_memory_.find(capability.name);
    fd = it == shared_memory_.end()
             ? absl::InternalError("shared memory was not prepared")
             : TakeFd(fcntl(it->second->get(), F_DUPFD_CLOEXEC, 0), "fcntl(F_DUPFD_CLOEXEC)");
  } else {
    fd = Make(capability, capability.access, effects, open);
  }
  if (!fd.ok()) {
    return absl::Status(fd.status().code(), absl::StrCat("capability '", capability.name,
                                                         "': ", fd.status().message()));
  }
  // The check's status names the grant itself. The file a refused open
  // made goes again while its fd is still open, so that no other file can
  // have its inode by then (OpenEffects::Undo).
  if (check) {
    if (absl::Status checked = check(capability.name, fd->get()); !checked.ok()) {
      UndoEffects(absl::MakeSpan(&effects, 1));
      return checked;
    }
  }
  return fd;
}

absl::StatusOr<RequestHandler::StartGrants> RequestHandler::GrantAtStart(
    const Identity& service, const std::vector<size_t>& grants, const StartCheck& check) {
  Session session;
  session.identity = service;
  // Finish fills an error into a reply nobody reads: the caller gets the
  // status.
  capnp::MallocMessageBuilder scratch(64);
  // A refusal is written whatever the budget of the service's uid, which a
  // client of that uid could spend to hide it: starts are rationed by the
  // service host (StartLimiter), so these lines are too.
  auto record = [&](const CapabilitySpec& capability, const absl::Status& status,
                    const audit::OpenOptions& open) {
    return Finish(session, "start", capability.name, capability.access, "", status,
                  service.service, scratch.initRoot<schema::Reply>(), open, Budget::kExempt);
  };
  StartGrants made;
  // What each file's open does besides opening, for its lines.
  std::vector<audit::OpenOptions> opens;
  for (size_t index : grants) {
    const CapabilitySpec& capability = policy_.capabilities()[index];
    // Kept whether or not the check refused the fd after its open.
    made.effects.emplace_back();
    opens.emplace_back();
    absl::StatusOr<UniqueFd> fd =
        MakeForStart(capability, check, made.effects.back(), opens.back());
    if (!fd.ok()) {
      record(capability, fd.status(), opens.back());
      // The fds made so far close here, never on record; the files their
      // opens made go again.
      UndoEffects(absl::MakeSpan(made.effects));
      return fd.status();
    }
    made.fds.push_back(std::move(fd).value());
  }
  made.record.service = service;
  for (size_t i = 0; i < grants.size(); ++i) {
    const CapabilitySpec& capability = policy_.capabilities()[grants[i]];
    made.record.grants.push_back({capability.name, capability.access,
                                  record(capability, absl::OkStatus(), opens[i]), opens[i]});
  }
  return made;
}

std::vector<uint64_t> RequestHandler::StartRecord::AuditLines() const {
  std::vector<uint64_t> lines;
  for (const Grant& grant : grants) lines.push_back(grant.audit_line);
  return lines;
}

void RequestHandler::StartNotDelivered(const StartRecord& record, const absl::Status& why) {
  Session session;
  session.identity = record.service;
  for (const StartRecord::Grant& grant : record.grants) {
    NotDelivered(session, "start", grant.capability, grant.access, "", why,
                 record.service.service, grant.open);
  }
}

void RequestHandler::StartLinesLost(StartRecord& record, const std::vector<uint64_t>& lost) {
  auto gone = std::remove_if(record.grants.begin(), record.grants.end(),
                             [&](const StartRecord::Grant& grant) {
                               return std::find(lost.begin(), lost.end(), grant.audit_line) !=
                                      lost.end();
                             });
  // Counted as grants when their lines were recorded (Finish).
  stats_.grants -= static_cast<uint64_t>(record.grants.end() - gone);
  record.grants.erase(gone, record.grants.end());
}

void RequestHandler::ConnectNotDelivered(const ConnectRequest& request,
                                         absl::string_view service, const absl::Status& why) {
  Session session;
  session.identity = request.client;
  NotDelivered(session, "connect", service, schema::Access::READ_WRITE, "", why,
               request.principal);
}

void RequestHandler::GrantNotDelivered(const Session& session,
                                       kj::ArrayPtr<const capnp::word> reply,
                                       absl::string_view principal,
                                       const audit::OpenOptions& open, absl::string_view why) {
  // The broker's own reply, made by Acquire, OpenBeneath or Connect (or
  // the service host's ConnectedAnswer): one fd entry says what it grants.
  capnp::FlatArrayMessageReader message(reply);
  const schema::FdInfo::Reader info = message.getRoot<schema::Reply>().getFds()[0];
  const bool connection = info.getKind() == schema::Kind::CONNECTION;
  const absl::string_view path = View(info.getPath());
  const absl::string_view request_kind =
      connection ? "connect" : path.empty() ? "acquire" : "openBeneath";
  NotDelivered(session, request_kind, View(info.getName()), info.getAccess(), path,
               absl::UnavailableError(why), principal, open);
}

void RequestHandler::NotDelivered(const Session& session, absl::string_view request_kind,
                                  absl::string_view capability, schema::Access access,
                                  absl::string_view path, const absl::Status& why,
                                  absl::string_view principal, const audit::OpenOptions& open) {
  // Finish fills the error into a reply nobody reads. Never throttled: at
  // most one per grant on record, and grants are never throttled; a spent
  // budget must not hide it.
  capnp::MallocMessageBuilder scratch(64);
  Finish(session, request_kind, capability, access, path,
         absl::Status(why.code(), absl::StrCat("not delivered: ", AuditReason(why))), principal,
         scratch.initRoot<schema::Reply>(), open, Budget::kExempt);
}

void RequestHandler::Status(const Session& session, schema::Reply::Builder reply) {
  auto status = reply.initStatus();
  const absl::Duration uptime = std::max(MonotonicNow() - stats_.started, absl::ZeroDuration());
  status.setVersion(schema::PROTOCOL_VERSION);
  status.setUptimeSeconds(static_cast<uint64_t>(absl::ToInt64Seconds(uptime)));
  status.setConnections(stats_.connections);
  status.setGrants(stats_.grants);
  status.setDenials(stats_.denials);
  auto reasons = status.initDenialsByReason(stats_.denials_by_reason.size());
  size_t i = 0;
  for (const auto& [reason, count] : stats_.denials_by_reason) {
    reasons[i].setReason(reason);
    reasons[i].setCount(count);
    ++i;
  }
  // The policy's path, and a reload error (which quotes the policy's lines
  // and the paths it checked), tell other users about the administrator's
  // files: only the administrators see them. The counters stay for all.
  if (IsAdministrator(session)) {
    status.setPolicyPath(policy_.source());
    // It can be far longer than a datagram (up to kMaxReportedErrors lines,
    // each quoting escaped paths): cut, saying where it is whole.
    std::string reload_error = stats_.last_reload_error;
    Bound(reload_error, wire::kMaxStatusTextBytes,
          "; the broker's standard error has it whole");
    status.setLastReloadError(reload_error);
    status.setAuditLogError(stats_.audit_reopen_error);
  }
  status.setAuditLinesLost(stats_.audit_lines_dropped);
  status.setAuditLinesToDeletedFiles(stats_.audit_lines_to_deleted_files);
  status.setPolicyGeneration(stats_.policy_generation);
  status.setPolicyReloadFailures(stats_.policy_reload_failures);
  if (stats_.last_reload.has_value()) {
    status.setLastReloadSecondsAgo(
        std::max<int64_t>(0, absl::ToInt64Seconds(MonotonicNow() - *stats_.last_reload)));
    status.setLastReloadRefused(stats_.last_reload_refused);
  }
  status.setCapabilities(policy_.capabilities().size());
  status.setPrincipals(policy_.principals().size());
}

bool RequestHandler::IsAdministrator(const Session& session) const {
  // A hosted service is none, whatever its uid: a per-user broker runs its
  // services as its own uid, and their sandbox hides the policy from them.
  if (!session.identity.service.empty()) return false;
  const uint32_t uid = session.identity.uid;
  return uid == 0 || uid == broker_uid_;
}

uint64_t RequestHandler::Finish(const Session& session, absl::string_view request_kind,
                            absl::string_view capability, schema::Access access,
                            absl::string_view path, const absl::Status& status,
                            absl::string_view principal,
                            schema::Reply::Builder reply,
                            const audit::OpenOptions& open, Budget budget) {
  uint64_t line = Record(session, request_kind, capability, AccessName(access), path, status,
                         principal, open, budget);
  if (!status.ok()) SetError(reply, status);
  return line;
}

uint64_t RequestHandler::Record(const Session& session, absl::string_view request_kind,
                                absl::string_view capability, absl::string_view access_name,
                                absl::string_view path, const absl::Status& status,
                                absl::string_view principal, const audit::OpenOptions& open,
                                Budget budget) {
  // A refusal's whole reason, when the client is told less (a connect to
  // a service that could not start, from one who is no administrator).
  std::string reason =
      status.ok() ? GrantReason(session.identity, request_kind, principal, capability)
                  : AuditReason(status);
  Bound(reason, kMaxAuditReasonBytes);
  if (session.audit_peer.empty()) {
    const Identity& peer = session.identity;
    session.audit_peer = audit::RenderPeer(peer.uid, peer.gid, peer.pid, peer.exe);
  }
  audit::AuditEvent event;
  event.uid = session.identity.uid;
  event.peer = session.audit_peer;
  event.request = request_kind;
  event.capability = capability;
  event.access = access_name;
  event.path = path;
  event.open = open;
  event.granted = status.ok();
  event.principal = principal;
  event.reason = reason;
  event.exempt_from_budget = budget == Budget::kExempt;
  uint64_t line = audit_.Record(event, audit::InstantNow());
  if (status.ok()) {
    ++stats_.grants;
  } else {
    CountDenial(status);
  }
  return line;
}

}  // namespace capbroker::server
