// What one piece of HSM work decided, carried back to the message that waited for it.
#pragma once

#include <edge/net/token/hsm_work.h>
#include <edge/net/token/token_codec.h>

#include <memory>
#include <string>

namespace edge::flow {

// A message that needed the HSM is parked (its bytes copied once), the work runs
// on an HsmWorkQueue thread, and the message is delivered again to the current
// handler with this attached. The handler uses the answer only for the same
// token text (verify) or flow (mint) and the same codec; anything else it
// decides afresh, which for a token that verified costs a cache hit.
struct HsmOutcome {
  HsmWorkKind kind = HsmWorkKind::verify;
  bool ran = false;                   // false: shed before it ran, or the queue stopped
  // Whose key set answered. Held, not only pointed at: a codec freed meanwhile
  // and another allocated at its address must not pass for it.
  std::shared_ptr<const TokenCodec> codec;
  std::string token;                  // verify: the token text that was checked
  VerifyResult verify;                // verify: the codec's answer
  FlowKey flow;                       // mint: the flow whose token was minted
  MintResult mint;                    // mint: the codec's answer
};

}  // namespace edge::flow
