// edge-demo: one call through the outbound edge, printed as a SIP ladder (run by scripts/demo inside
// netns-run).
//
//   alice (TCP) --flow--> edged 127.0.0.1:5060 --> Kamailio 127.0.0.1:5080 <-- bob (UDP)
//
// Starts Kamailio (the harness's template) and edged with its embedded lab
// default in a temp state dir, registers alice through the edge, lets bob call
// her, and prints every message the two user agents sent and received, with the
// headers that tell the outbound story (Path, Route, Record-Route, Via,
// Flow-Timer). Everything it started is stopped when it exits, also on error.
//
// The core reuses the TCP connection edged opened to it (force_tcp_alias(), see
// write_aliasing_core_template): edged takes requests from the core only on that
// connection. --stock-core runs the harness's template unchanged, where Kamailio
// connects to the Path URI by itself and the INVITE never reaches alice (the
// edge sends it back to the core; see tests/integration/edge, StockCore).
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>

#include "edge/test/sip/kamailio.h"
#include "edge/test/sip/message.h"
#include "edge/test/sip/test_ua.h"
#include "edged_process.h"

namespace {

using namespace edge::test;

bool g_verbose = false;
bool g_stock_core = false;
int g_step = 0;

const char* kInterestingHeaders[] = {"Via",     "Route",      "Record-Route", "Path",   "Contact",
                                     "Require", "Flow-Timer", "Server",       "Expires"};

// One rung of the ladder: "  3  alice ---------> edge     INVITE sip:..." plus the headers that matter.
void rung(std::string_view from, std::string_view to, const SipMessage& m, std::string_view note = {}) {
  std::printf("\n%2d  %-6s ----> %-6s %s%s%.*s\n", ++g_step, std::string(from).c_str(),
              std::string(to).c_str(), m.summary().c_str(), note.empty() ? "" : "   ",
              static_cast<int>(note.size()), note.data());
  if (g_verbose) {
    std::printf("%s\n", m.to_string().c_str());
    return;
  }
  for (const char* h : kInterestingHeaders) {
    for (const auto& v : m.header_values(h))
      std::printf("        %-13s %s\n", (std::string(h) + ":").c_str(), v.c_str());
  }
}

void hop(std::string_view from, std::string_view to, std::string_view what) {
  std::printf("    %-6s ----> %-6s %.*s\n", std::string(from).c_str(), std::string(to).c_str(),
              static_cast<int>(what.size()), what.data());
}

int run() {
  std::printf(
      "== edge demo: Kamailio core on 127.0.0.1:5080, edged (lab default config) on 127.0.0.1:5060..5063\n");
  TempDir scratch("edge-demo");
  KamailioOptions ko;
  if (!g_stock_core) ko.config_template = write_aliasing_core_template(scratch.path());
  KamailioProcess core(ko);
  EdgedOptions eo;
  eo.write_config = false;  // the embedded lab default, written on first boot
  EdgedProcess edge(eo);
  std::printf("== edged started, state dir %s\n", edge.state_dir().c_str());
  for (const auto& line : edge.events("listening")) std::printf("   %s\n", line.c_str());

  TestUa alice("alice");
  alice.connect(Transport::tcp, edge.endpoint(Transport::tcp));
  TestUa bob("bob");
  bob.connect(Transport::udp, core.endpoint(Transport::udp));
  std::printf("== alice %s/TCP -> edge %s; bob %s/UDP -> core %s\n",
              alice.local_endpoint().host_port().c_str(), edge.endpoint(Transport::tcp).host_port().c_str(),
              bob.local_endpoint().host_port().c_str(), core.endpoint(Transport::udp).host_port().c_str());

  // REGISTER: the edge adds Path with its flow token and ;ob; the core stores it.
  SipMessage reg = alice.make_register();
  alice.send(reg);
  rung("alice", "edge", reg);
  hop("edge", "core", "REGISTER + Via edge + Path: <sip:TOKEN@127.0.0.1:5060;transport=tcp;lr;ob>");
  hop("core", "edge", "200 OK (binding stored with the Path)");
  SipMessage ok = alice.receive_response("REGISTER");
  rung("edge", "alice", ok, "(edge added Flow-Timer)");
  if (ok.status() != 200) throw std::runtime_error("REGISTER failed: " + ok.summary());

  // INVITE from bob: core -> Path -> edge -> alice's own connection.
  SipMessage invite = bob.make_invite(alice.aor());
  bob.send(invite);
  rung("bob", "core", invite);
  hop("core", "edge", "INVITE with Route: <Path URI> (token checked by the edge)");
  SipMessage in = alice.receive_request("INVITE");
  rung("edge", "alice", in, "(on alice's own TCP connection)");
  const std::string tag = TestUa::new_tag();
  SipMessage answer = alice.make_response(in, 200, "OK", tag, make_sdp(alice.local_endpoint().host(), 40002));
  alice.send(answer);
  rung("alice", "edge", answer);
  hop("edge", "core", "200 OK");
  SipMessage answered = bob.receive_response("INVITE");
  rung("core", "bob", answered);
  if (answered.status() != 200) throw std::runtime_error("INVITE failed: " + answered.summary());

  Dialog bob_dialog = Dialog::as_uac(invite, answered);
  SipMessage ack = bob.make_ack(bob_dialog);
  bob.send(ack);
  rung("bob", "core", ack);
  hop("core", "edge", "ACK (Record-Route with the token)");
  rung("edge", "alice", alice.receive_request("ACK"));

  SipMessage bye = bob.make_in_dialog(bob_dialog, "BYE");
  bob.send(bye);
  rung("bob", "core", bye);
  hop("core", "edge", "BYE (Record-Route with the token)");
  SipMessage bye_in = alice.receive_request("BYE");
  rung("edge", "alice", bye_in);
  SipMessage bye_ok = alice.make_response(bye_in, 200, "OK");
  alice.send(bye_ok);
  rung("alice", "edge", bye_ok);
  hop("edge", "core", "200 OK");
  rung("core", "bob", bob.receive_response("BYE"));

  // Key rotation through the management agent, with alice's flow kept.
  std::printf("\n== key rotation through the management API (edgectl over %s/mgmt.sock)\n",
              edge.state_dir().c_str());
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"keyset", "rotate", "sipflow"}, std::vector<std::string>{"apply"},
        std::vector<std::string>{"status"}}) {
    std::string out;
    std::string shown = "edgectl";
    for (const auto& a : args) shown += " " + a;
    const int rc = edge.edgectl(args, &out);
    std::printf("$ %s\n%s", shown.c_str(), out.c_str());
    if (rc != 0) throw std::runtime_error(shown + " failed with exit " + std::to_string(rc));
  }
  const Endpoint flow = alice.local_endpoint();
  SipMessage again = alice.register_with();
  rung("edge", "alice", again, "(re-REGISTER on the same connection: token of key version 2)");
  if (!(alice.local_endpoint() == flow)) throw std::runtime_error("alice's flow changed across the apply");

  alice.close();
  bob.close();
  const EdgedStatus s = edge.status();
  std::printf(
      "\n== edged status: flows_tcp=%s requests_from_clients=%s requests_from_core=%s mints_hsm=%s "
      "verifies_avoided=%s verifies_hsm=%s\n",
      s.text("flows_tcp").c_str(), s.text("requests_from_clients").c_str(),
      s.text("requests_from_core").c_str(), s.text("mints_hsm").c_str(), s.text("verifies_avoided").c_str(),
      s.text("verifies_hsm").c_str());
  const int status = edge.stop();
  std::printf("== edged stopped (exit %d), Kamailio stopped, temp dirs removed\n", status);
  return status == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "-v" || a == "--verbose") {
      g_verbose = true;
    } else if (a == "--stock-core") {
      g_stock_core = true;
    } else {
      std::fprintf(stderr,
                   "usage: edge-demo [-v|--verbose] [--stock-core]   (run it through scripts/demo)\n");
      return 2;
    }
  }
  if (std::getenv("EDGE_IN_NETNS") == nullptr) {
    std::fprintf(stderr, "edge-demo: run it inside a private network namespace (scripts/demo does)\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // the ladder and any error in order
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "edge-demo: %s\n", e.what());
    return 1;
  }
}
