/* proto.c: the rendezvous store's handshake parameters (the format itself is described in
 * proto.h; the codec is common/wire.h, the handshake common/auth.h). No I/O happens here. */
#include "rendezvous/proto.h"

const struct bt__auth_proto bt__rdzv_auth = {
    .magic = BT__RDZV_MAGIC,
    .version = BT__RDZV_VERSION,
    .label_client = BT__RDZV_LABEL_CLIENT,
    .label_server = BT__RDZV_LABEL_SERVER,
    .hello_extra = 4, /* u32 kind */
    .result_extra = 0,
};

void bt__rdzv_hello(uint8_t out[BT__RDZV_HELLO_LEN], uint32_t version, uint32_t kind,
                    const uint8_t cnonce[BT__AUTH_NONCE])
{
    uint8_t k[4];
    bt__put_le32(k, kind);
    bt__auth_hello(&bt__rdzv_auth, k, cnonce, out);
    bt__put_le32(out + 8, version);
}
