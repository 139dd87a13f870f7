/* Prints the layout and constants of Xen's xs_wire.h, one "name value" per line,
 * for xenstore/tests/xs_wire_c_abi.rs to compare with xennet_ring::xenstore. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <xen/io/xs_wire.h>

#define OFF(f) printf("offset_%s %zu\n", #f, offsetof(struct xenstore_domain_interface, f))
#define VAL(n) printf("%s %ld\n", #n, (long)(n))

int main(void)
{
    OFF(req);
    OFF(rsp);
    OFF(req_cons);
    OFF(req_prod);
    OFF(rsp_cons);
    OFF(rsp_prod);
    OFF(server_features);
    OFF(connection);
    OFF(error);
    printf("sizeof_interface %zu\n", sizeof(struct xenstore_domain_interface));
    printf("sizeof_sockmsg %zu\n", sizeof(struct xsd_sockmsg));
    VAL(XENSTORE_RING_SIZE);
    VAL(XENSTORE_PAYLOAD_MAX);
    VAL(XENSTORE_ABS_PATH_MAX);
    VAL(XENSTORE_REL_PATH_MAX);
    VAL(MASK_XENSTORE_IDX(1025));
    VAL(XENSTORE_SERVER_FEATURE_RECONNECTION);
    VAL(XENSTORE_SERVER_FEATURE_ERROR);
    VAL(XENSTORE_CONNECTED);
    VAL(XENSTORE_RECONNECT);
    VAL(XENSTORE_ERROR_NONE);
    VAL(XENSTORE_ERROR_COMM);
    VAL(XENSTORE_ERROR_RINGIDX);
    VAL(XENSTORE_ERROR_PROTO);
    VAL(XS_DIRECTORY);
    VAL(XS_READ);
    VAL(XS_WATCH);
    VAL(XS_UNWATCH);
    VAL(XS_TRANSACTION_START);
    VAL(XS_TRANSACTION_END);
    VAL(XS_WRITE);
    VAL(XS_MKDIR);
    VAL(XS_RM);
    VAL(XS_WATCH_EVENT);
    VAL(XS_ERROR);
    VAL(XS_RESET_WATCHES);
    VAL(XS_DIRECTORY_PART);
    VAL(XS_TYPE_COUNT);
    for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
        printf("error_%zu %s\n", i, xsd_errors[i].errstring);
    return 0;
}
