// edgectl: the command-line client of the management API (Unix socket or TCP with mutual TLS).
#include <edge/mgmt/v1/agent.grpc.pb.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "edgectl_print.h"

namespace {
namespace v1 = edge::mgmt::v1;
using edgectl::print_apply;

// Exit codes (docs/api.md): scripts branch on them.
constexpr int kExitOther = 1;
constexpr int kExitUsage = 2;
constexpr int kExitRefused = 3;
constexpr int kExitDenied = 4;
constexpr int kExitUnreachable = 5;

struct UsageError {
  std::string message;
  std::string command;  // for the "edgectl help <command>" hint
};

struct CallError {
  grpc::Status status;
  bool cell = false;  // a cell command: every failure exits 1 (docs/operations.md, "Running a cell")
};

struct Command {
  const char* name;
  const char* synopsis;
  const char* help;
  std::set<std::string> options;  // the command's own options
};

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {
      {"status", "status", "The agent's version, committed generation, front end and HSM state.", {}},
      {"keyset",
       "keyset list | show NAME | create NAME [--retain N] | rotate NAME | retire NAME VERSION | destroy "
       "NAME",
       "Key sets in the HSM. Changes happen in the HSM at once; a rotation of the key set in use\n"
       "stages its new minting version, which the front end takes at the next apply.\n"
       "--retain N: versions kept verifying (create; 0: the agent's default).",
       {"retain"}},
      {"property",
       "property list | get NAME | set NAME VALUE | unset NAME",
       "Custom properties. set/unset stage a change (see 'config show --staged'); apply makes it live.\n"
       "NAME may be an alias (e.g. com.ibm.ws.sip.key.set). List values are written \"a; b\".",
       {}},
      {"config",
       "config show [--staged]",
       "The committed configuration as name = value lines; --staged: with the staged changes.",
       {"staged"}},
      {"discard", "discard", "Drops every staged change.", {}},
      {"apply",
       "apply [--confirm-within SECONDS] [--request-id ID] [--expect-generation N]",
       "Validates the staged configuration, restarts the SIP front end as needed and commits a\n"
       "new generation, or rolls back and says why.\n"
       "--confirm-within S: commit only if 'edgectl confirm' follows within S seconds, else roll back.\n"
       "--request-id ID: a retry with the same id returns the first answer instead of applying twice.\n"
       "--expect-generation N: refuse unless N is the committed generation.",
       {"confirm-within", "request-id", "expect-generation"}},
      {"confirm", "confirm", "Commits an apply made with --confirm-within.", {}},
      {"rollback",
       "rollback [GENERATION] [--request-id ID]",
       "Goes back to GENERATION (default: the one before the committed one).",
       {"request-id"}},
      {"generations", "generations", "The committed generations kept for rollback ('*': running).", {}},
      {"restart", "restart", "Controlled restart of the SIP front end (flows are kept).", {}},
      {"events",
       "events [--count N]",
       "Streams management events until interrupted, or until N arrived.",
       {"count"}},
      {"cell",
       "cell create NAME --etcd URLS [--member-id ID] | join NAME --etcd URLS [--member-id ID] | approve "
       "MEMBER --fingerprint FP | rotate | remove MEMBER | leave | status",
       "The cell: appliances that share one flow-token key set through etcd (docs/operations.md,\n"
       "\"Running a cell\").\n"
       "create NAME --etcd URLS: a new cell with this appliance as its first member (URLS: comma-separated\n"
       "  http://HOST:PORT or https://HOST:PORT); its key set NAME v1 mints at once.\n"
       "join NAME --etcd URLS: asks to join; prints this member's id and fingerprint and the members found.\n"
       "  Compare the fingerprints out of band, then approve both ways (on a member, and here).\n"
       "approve MEMBER --fingerprint FP: this member trusts MEMBER (admits its keys into this HSM).\n"
       "rotate: a new version for the whole cell (two phases: every member imports it, then all switch).\n"
       "remove MEMBER: a member that is gone (a dead member blocks a rotation until removed).\n"
       "leave: this member leaves the cell (its keys and minting version stay).\n"
       "status [--json]: members, liveness, versions each holds, minting version, rotation, etcd.\n"
       "--member-id ID: this member's id (default: cell.member_id, else the host name).\n"
       "Exit codes: 0 ok, 1 failed (the reason on stderr), 2 usage.",
       {"etcd", "member-id", "fingerprint"}},
      {"help", "help [COMMAND]", "Shows the usage, or a command's help.", {}},
  };
  return all;
}

const Command* find_command(std::string_view name) {
  for (const auto& c : commands())
    if (name == c.name) return &c;
  return nullptr;
}

void print_usage(std::ostream& out) {
  out << "usage: edgectl [OPTIONS] COMMAND [ARGS]\n\n"
         "Talks to the edge appliance's management agent.\n\n"
         "Commands:\n";
  for (const auto& c : commands()) out << "  " << c.synopsis << '\n';
  out << "\nOptions:\n"
         "  --socket PATH       agent's Unix socket (default: $EDGE_STATE_DIR/mgmt.sock, else "
         "./var/mgmt.sock)\n"
         "  --tcp HOST:PORT     use TCP with mutual TLS instead (needs --cert, --key, --ca)\n"
         "  --cert FILE         client certificate (PEM)\n"
         "  --key FILE          its private key (PEM)\n"
         "  --ca FILE           CA that signed the agent's certificate (PEM)\n"
         "  --server-name NAME  name to check the agent's certificate against (default: HOST)\n"
         "  --timeout SECONDS   deadline per call (default 30; apply, confirm, rollback, restart: 120)\n"
         "  --json              protobuf JSON, one document per line\n"
         "  --help, --version\n\n"
         "Exit codes: 0 ok, 1 other error, 2 usage, 3 refused by the agent, 4 permission or\n"
         "authentication, 5 agent unreachable.\n";
}

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // flags map to ""
  bool has(const std::string& o) const { return options.count(o) != 0; }
};

// Function-local statics: a std::set built at namespace scope could throw before main.
const std::set<std::string>& value_options() {
  static const std::set<std::string> k = {"socket",      "tcp",
                                          "cert",        "key",
                                          "ca",          "timeout",
                                          "server-name", "retain",
                                          "count",       "confirm-within",
                                          "request-id",  "expect-generation",
                                          "etcd",        "member-id",
                                          "fingerprint"};
  return k;
}
const std::set<std::string>& flag_options() {
  static const std::set<std::string> k = {"json", "help", "version", "staged"};
  return k;
}
const std::set<std::string>& global_options() {
  static const std::set<std::string> k = {"socket",  "tcp",         "cert", "key",  "ca",
                                          "timeout", "server-name", "json", "help", "version"};
  return k;
}

Args parse(int argc, char** argv) {
  Args a;
  bool options_end = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (options_end || arg.size() < 3 || arg.rfind("--", 0) != 0) {
      if (arg == "--") {
        options_end = true;
        continue;
      }
      a.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (flag_options().count(name) != 0) {
      if (value) throw UsageError{"--" + name + " takes no value", ""};
      a.options[name] = "";
    } else if (value_options().count(name) != 0) {
      if (!value) {
        if (i + 1 >= argc) throw UsageError{"--" + name + " needs a value", ""};
        value = argv[++i];
      }
      a.options[name] = *value;
    } else {
      throw UsageError{"unknown option " + arg, ""};
    }
  }
  return a;
}

std::uint64_t parse_uint(const std::string& text, const std::string& what, const std::string& cmd) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    throw UsageError{what + ": '" + text + "' is not an unsigned integer", cmd};
  return v;
}

std::uint32_t parse_u32(const std::string& text, const std::string& what, const std::string& cmd) {
  std::uint64_t v = parse_uint(text, what, cmd);
  if (v > UINT32_MAX) throw UsageError{what + ": " + text + " is too large", cmd};
  return static_cast<std::uint32_t>(v);
}

std::string read_file(const std::string& path, const char* option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError{std::string("cannot read ") + option + " '" + path + "'", ""};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::shared_ptr<grpc::Channel> open_channel(const Args& a) {
  if (a.has("tcp")) {
    if (a.has("socket")) throw UsageError{"--tcp and --socket exclude each other", ""};
    if (!a.has("cert") || !a.has("key") || !a.has("ca"))
      throw UsageError{"--tcp needs --cert, --key and --ca", ""};
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = read_file(a.options.at("ca"), "--ca");
    ssl.pem_cert_chain = read_file(a.options.at("cert"), "--cert");
    ssl.pem_private_key = read_file(a.options.at("key"), "--key");
    grpc::ChannelArguments args;
    if (a.has("server-name")) args.SetSslTargetNameOverride(a.options.at("server-name"));
    return grpc::CreateCustomChannel(a.options.at("tcp"), grpc::SslCredentials(ssl), args);
  }
  std::string path;
  if (a.has("socket")) {
    path = a.options.at("socket");
  } else if (const char* state = std::getenv("EDGE_STATE_DIR"); state != nullptr && *state != '\0') {
    path = std::string(state) + "/mgmt.sock";
  } else {
    path = "var/mgmt.sock";
  }
  return grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials());
}

class Client {
 public:
  Client(const Args& a, std::string command)
      : command_(std::move(command)),
        json_(a.has("json")),
        stub_(v1::EdgeManagement::NewStub(open_channel(a))),
        timeout_(call_timeout(a, command_)) {}

  // Runs one unary call: `method` is a Stub member function such as &Stub::GetStatus.
  template <class Req, class Resp>
  Resp call(grpc::Status (v1::EdgeManagement::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
            const Req& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
    Resp resp;
    grpc::Status st = (stub_.get()->*method)(&ctx, req, &resp);
    if (!st.ok()) throw CallError{st};
    return resp;
  }

  // Prints `msg` as JSON, or with `human` when --json was not given.
  template <class Msg, class Human>
  void show(const Msg& msg, Human&& human) {
    if (!json_) {
      human(std::cout, msg);
      return;
    }
    google::protobuf::util::JsonPrintOptions o;
    o.preserve_proto_field_names = true;
    o.always_print_primitive_fields = true;
    std::string out;
    auto st = google::protobuf::util::MessageToJsonString(msg, &out, o);
    if (!st.ok()) throw std::runtime_error("cannot render JSON: " + std::string(st.message()));
    std::cout << out << std::endl;
  }

  bool json() const { return json_; }
  v1::EdgeManagement::Stub& stub() { return *stub_; }

 private:
  // --timeout, else 120 s for the commands that wait for a controlled restart, 30 s for the rest.
  static std::chrono::seconds call_timeout(const Args& a, const std::string& command) {
    if (a.has("timeout")) {
      const std::chrono::seconds t(parse_uint(a.options.at("timeout"), "--timeout", ""));
      if (t.count() == 0) throw UsageError{"--timeout must be at least 1", ""};
      return t;
    }
    const bool slow = command == "apply" || command == "confirm" || command == "rollback" ||
                      command == "restart" || command == "cell";
    return std::chrono::seconds(slow ? 120 : 30);
  }

  std::string command_;
  bool json_;
  std::unique_ptr<v1::EdgeManagement::Stub> stub_;
  std::chrono::seconds timeout_{30};
};

using Stub = v1::EdgeManagement::Stub;

void expect_args(const Args& a, std::size_t min, std::size_t max, const std::string& cmd) {
  // positional[0] is the command itself (and [1] the sub-command where there is one).
  if (a.positional.size() < min) throw UsageError{"missing argument", cmd};
  if (a.positional.size() > max) throw UsageError{"unexpected argument '" + a.positional[max] + "'", cmd};
}

int run_keyset(Client& c, const Args& a) {
  const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
  if (sub != "create" && a.has("retain")) throw UsageError{"--retain belongs to 'keyset create'", "keyset"};
  auto name = [&] { return a.positional.at(2); };
  if (sub == "list") {
    expect_args(a, 2, 2, "keyset");
    c.show(c.call(&Stub::ListKeySets, v1::ListKeySetsRequest()), edgectl::print_key_sets);
  } else if (sub == "show") {
    expect_args(a, 3, 3, "keyset");
    v1::GetKeySetRequest r;
    r.set_name(name());
    c.show(c.call(&Stub::GetKeySet, r), edgectl::print_key_set);
  } else if (sub == "create") {
    expect_args(a, 3, 3, "keyset");
    v1::CreateKeySetRequest r;
    r.set_name(name());
    if (a.has("retain")) r.set_retain(parse_u32(a.options.at("retain"), "--retain", "keyset"));
    c.show(c.call(&Stub::CreateKeySet, r), edgectl::print_key_set_change);
  } else if (sub == "rotate") {
    expect_args(a, 3, 3, "keyset");
    v1::RotateKeySetRequest r;
    r.set_name(name());
    c.show(c.call(&Stub::RotateKeySet, r), edgectl::print_key_set_change);
  } else if (sub == "retire") {
    expect_args(a, 4, 4, "keyset");
    v1::RetireKeyVersionRequest r;
    r.set_name(name());
    r.set_version(parse_u32(a.positional[3], "VERSION", "keyset"));
    c.show(c.call(&Stub::RetireKeyVersion, r), edgectl::print_key_set_change);
  } else if (sub == "destroy") {
    expect_args(a, 3, 3, "keyset");
    v1::DestroyKeySetRequest r;
    r.set_name(name());
    c.show(c.call(&Stub::DestroyKeySet, r), edgectl::print_key_set_change);
  } else {
    throw UsageError{sub.empty() ? "missing sub-command" : "unknown sub-command '" + sub + "'", "keyset"};
  }
  return 0;
}

int run_property(Client& c, const Args& a) {
  const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
  if (sub == "list") {
    expect_args(a, 2, 2, "property");
    c.show(c.call(&Stub::ListProperties, v1::ListPropertiesRequest()), edgectl::print_properties);
  } else if (sub == "get") {
    expect_args(a, 3, 3, "property");
    v1::GetPropertyRequest r;
    r.set_name(a.positional[2]);
    c.show(c.call(&Stub::GetProperty, r), edgectl::print_property);
  } else if (sub == "set") {
    expect_args(a, 4, 4, "property");
    v1::SetPropertyRequest r;
    r.set_name(a.positional[2]);
    r.set_value(a.positional[3]);
    c.show(c.call(&Stub::SetProperty, r), edgectl::print_property);
  } else if (sub == "unset") {
    expect_args(a, 3, 3, "property");
    v1::UnsetPropertyRequest r;
    r.set_name(a.positional[2]);
    c.show(c.call(&Stub::UnsetProperty, r), edgectl::print_property);
  } else {
    throw UsageError{sub.empty() ? "missing sub-command" : "unknown sub-command '" + sub + "'", "property"};
  }
  return 0;
}

int run_config(Client& c, const Args& a) {
  if (a.positional.size() < 2 || a.positional[1] != "show")
    throw UsageError{
        a.positional.size() < 2 ? "missing sub-command" : "unknown sub-command '" + a.positional[1] + "'",
        "config"};
  expect_args(a, 2, 2, "config");
  v1::GetConfigResponse cfg = c.call(&Stub::GetConfig, v1::GetConfigRequest());
  if (c.json()) {
    c.show(cfg, [](std::ostream&, const v1::GetConfigResponse&) {});
    return 0;
  }
  // The property view names every value the way `property set` takes it.
  v1::ListPropertiesResponse props = c.call(&Stub::ListProperties, v1::ListPropertiesRequest());
  edgectl::print_config(std::cout, cfg, props, a.has("staged"));
  return 0;
}

int run_apply(Client& c, const Args& a) {
  expect_args(a, 1, 1, "apply");
  v1::ApplyRequest r;
  if (a.has("confirm-within"))
    r.set_confirm_within_seconds(parse_u32(a.options.at("confirm-within"), "--confirm-within", "apply"));
  if (a.has("request-id")) r.set_request_id(a.options.at("request-id"));
  if (a.has("expect-generation"))
    r.set_expected_generation(parse_uint(a.options.at("expect-generation"), "--expect-generation", "apply"));
  c.show(c.call(&Stub::Apply, r), print_apply);
  return 0;
}

int run_rollback(Client& c, const Args& a) {
  expect_args(a, 1, 2, "rollback");
  v1::RollbackRequest r;
  if (a.positional.size() == 2) r.set_generation(parse_uint(a.positional[1], "GENERATION", "rollback"));
  if (a.has("request-id")) r.set_request_id(a.options.at("request-id"));
  c.show(c.call(&Stub::Rollback, r), print_apply);
  return 0;
}

int run_events(Client& c, const Args& a) {
  expect_args(a, 1, 1, "events");
  std::uint64_t limit = a.has("count") ? parse_uint(a.options.at("count"), "--count", "events") : 0;
  // No deadline: a watch lasts as long as the operator wants it.
  grpc::ClientContext ctx;
  auto reader = c.stub().WatchEvents(&ctx, v1::WatchEventsRequest());
  std::uint64_t seen = 0;
  v1::Event ev;
  while ((limit == 0 || seen < limit) && reader->Read(&ev)) {
    c.show(ev, edgectl::print_event);
    ++seen;
  }
  if (limit != 0 && seen == limit) {
    ctx.TryCancel();  // done: the CANCELLED that Finish reports now is ours
    reader->Finish();
    return 0;
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) throw CallError{st};
  return 0;
}

int run_cell(Client& c, const Args& a) {
  const std::string sub = a.positional.size() > 1 ? a.positional[1] : "";
  const bool entering = sub == "create" || sub == "join";
  if (!entering && (a.has("etcd") || a.has("member-id")))
    throw UsageError{"--etcd and --member-id belong to 'cell create' and 'cell join'", "cell"};
  if (sub != "approve" && a.has("fingerprint"))
    throw UsageError{"--fingerprint belongs to 'cell approve'", "cell"};
  try {
    if (entering) {
      expect_args(a, 3, 3, "cell");
      if (!a.has("etcd") || a.options.at("etcd").empty())
        throw UsageError{"'cell " + sub + "' needs --etcd URLS", "cell"};
      const std::string member = a.has("member-id") ? a.options.at("member-id") : "";
      if (sub == "create") {
        v1::CellCreateRequest r;
        r.set_name(a.positional[2]);
        r.set_etcd_endpoints(a.options.at("etcd"));
        r.set_member_id(member);
        c.show(c.call(&Stub::CellCreate, r), edgectl::print_cell_status);
      } else {
        v1::CellJoinRequest r;
        r.set_name(a.positional[2]);
        r.set_etcd_endpoints(a.options.at("etcd"));
        r.set_member_id(member);
        c.show(c.call(&Stub::CellJoin, r), edgectl::print_cell_join);
      }
    } else if (sub == "approve") {
      expect_args(a, 3, 3, "cell");
      if (!a.has("fingerprint") || a.options.at("fingerprint").empty())
        throw UsageError{"'cell approve' needs --fingerprint FP (as 'cell join' printed it)", "cell"};
      v1::CellApproveRequest r;
      r.set_member(a.positional[2]);
      r.set_fingerprint(a.options.at("fingerprint"));
      c.show(c.call(&Stub::CellApprove, r), edgectl::print_cell_status);
    } else if (sub == "rotate") {
      expect_args(a, 2, 2, "cell");
      c.show(c.call(&Stub::CellRotate, v1::CellRotateRequest()), [](std::ostream& out, const auto& r) {
        out << "rotation to v" << r.version()
            << " started: every member imports it, then the cell switches minting\n\n";
        edgectl::print_cell_status(out, r.status());
      });
    } else if (sub == "remove") {
      expect_args(a, 3, 3, "cell");
      v1::CellRemoveRequest r;
      r.set_member(a.positional[2]);
      c.show(c.call(&Stub::CellRemove, r), edgectl::print_cell_status);
    } else if (sub == "leave") {
      expect_args(a, 2, 2, "cell");
      c.show(c.call(&Stub::CellLeave, v1::CellLeaveRequest()), [](std::ostream& out, const auto& r) {
        out << "left cell " << r.cell() << " as " << r.member_id()
            << "; the key set and its minting version stay in this HSM\n";
      });
    } else if (sub == "status") {
      expect_args(a, 2, 2, "cell");
      c.show(c.call(&Stub::CellStatus, v1::CellStatusRequest()), edgectl::print_cell_status);
    } else {
      throw UsageError{sub.empty() ? "missing sub-command" : "unknown sub-command '" + sub + "'", "cell"};
    }
  } catch (CallError& e) {
    e.cell = true;
    throw;
  }
  return 0;
}

int run(const Args& a) {
  if (a.has("version")) {
    std::cout << "edgectl " << EDGE_VERSION << '\n';
    return 0;
  }
  if (a.positional.empty() || a.positional[0] == "help") {
    if (a.positional.size() > 2) throw UsageError{"help takes one command", "help"};
    if (a.positional.size() == 2) {
      const Command* cmd = find_command(a.positional[1]);
      if (cmd == nullptr) throw UsageError{"unknown command '" + a.positional[1] + "'", ""};
      std::cout << "usage: edgectl [OPTIONS] " << cmd->synopsis << "\n\n" << cmd->help << '\n';
      return 0;
    }
    if (a.positional.empty() && !a.has("help")) throw UsageError{"missing command", ""};
    print_usage(std::cout);
    return 0;
  }
  const std::string& name = a.positional[0];
  const Command* cmd = find_command(name);
  if (cmd == nullptr) throw UsageError{"unknown command '" + name + "'", ""};
  if (a.has("help")) {
    std::cout << "usage: edgectl [OPTIONS] " << cmd->synopsis << "\n\n" << cmd->help << '\n';
    return 0;
  }
  for (const auto& [opt, value] : a.options) {
    if (global_options().count(opt) == 0 && cmd->options.count(opt) == 0)
      throw UsageError{std::string("--").append(opt).append(" does not apply to '").append(name).append("'"),
                       name};
  }

  Client c(a, name);
  if (name == "status") {
    expect_args(a, 1, 1, name);
    c.show(c.call(&Stub::GetStatus, v1::GetStatusRequest()), edgectl::print_status);
  } else if (name == "keyset") {
    return run_keyset(c, a);
  } else if (name == "property") {
    return run_property(c, a);
  } else if (name == "config") {
    return run_config(c, a);
  } else if (name == "discard") {
    expect_args(a, 1, 1, name);
    c.show(c.call(&Stub::DiscardStaged, v1::DiscardStagedRequest()), [](std::ostream& out, const auto& r) {
      out << "staged changes discarded; generation " << r.generation() << " unchanged\n";
    });
  } else if (name == "apply") {
    return run_apply(c, a);
  } else if (name == "confirm") {
    expect_args(a, 1, 1, name);
    c.show(c.call(&Stub::Confirm, v1::ConfirmRequest()), print_apply);
  } else if (name == "rollback") {
    return run_rollback(c, a);
  } else if (name == "generations") {
    expect_args(a, 1, 1, name);
    c.show(c.call(&Stub::ListGenerations, v1::ListGenerationsRequest()), edgectl::print_generations);
  } else if (name == "restart") {
    expect_args(a, 1, 1, name);
    c.show(c.call(&Stub::RestartFrontEnd, v1::RestartFrontEndRequest()),
           [](std::ostream& out, const auto& r) {
             out << "front end restarted; drain " << r.drain_ms() << " ms\n";
           });
  } else if (name == "events") {
    return run_events(c, a);
  } else if (name == "cell") {
    return run_cell(c, a);
  }
  return 0;
}

const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

int exit_code(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return kExitRefused;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return kExitDenied;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnreachable;
    default:
      return kExitOther;
  }
}

// One line: newlines inside an agent's message would break scripts reading stderr line by line.
std::string one_line(std::string s) {
  for (char& ch : s)
    if (ch == '\n' || ch == '\r') ch = ' ';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const UsageError& e) {
    std::cerr << "edgectl: usage: " << one_line(e.message) << " (see 'edgectl help"
              << (e.command.empty() ? "" : " " + e.command) << "')\n";
    return kExitUsage;
  } catch (const CallError& e) {
    std::cerr << "edgectl: " << code_name(e.status.error_code()) << ": " << one_line(e.status.error_message())
              << '\n';
    return e.cell ? kExitOther : exit_code(e.status.error_code());
  } catch (const std::exception& e) {
    std::cerr << "edgectl: INTERNAL: " << one_line(e.what()) << '\n';
    return kExitOther;
  }
}
