/* A peer that uses Xen's own io/ring.h and io/netif.h macros on a ring page in a file,
 * to check xennet's FrontRing/BackRing interoperate with them in both roles.
 *
 *   ring_peer abi                  print sizes/offsets/ring sizes as key=value lines
 *   ring_peer back FILE            answer every published tx request (status = id*2 % 7)
 *   ring_peer front FILE START N   init a tx ring at index START (attach) and queue N requests
 *   ring_peer reap FILE START      consume all responses, print "rsp id status" lines
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
/* ring.h expects the environment to provide its barriers (xen_mb/xen_wmb/xen_rmb
 * default to mb/wmb/rmb): full fences here. */
#define mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/netif.h>

static void *map(const char *path) {
    int fd = open(path, O_RDWR);
    if (fd < 0) { perror(path); exit(2); }
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
    close(fd);
    return p;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "abi")) {
        printf("tx_request=%zu\n", sizeof(struct netif_tx_request));
        printf("tx_response=%zu\n", sizeof(struct netif_tx_response));
        printf("rx_request=%zu\n", sizeof(struct netif_rx_request));
        printf("rx_response=%zu\n", sizeof(struct netif_rx_response));
        printf("extra_info=%zu\n", sizeof(struct netif_extra_info));
        printf("grant_entry_v1=%zu\n", sizeof(grant_entry_v1_t));
        printf("gnttab_copy=%zu\n", sizeof(struct gnttab_copy));
        printf("tx_request.gref=%zu\n", offsetof(struct netif_tx_request, gref));
        printf("tx_request.offset=%zu\n", offsetof(struct netif_tx_request, offset));
        printf("tx_request.flags=%zu\n", offsetof(struct netif_tx_request, flags));
        printf("tx_request.id=%zu\n", offsetof(struct netif_tx_request, id));
        printf("tx_request.size=%zu\n", offsetof(struct netif_tx_request, size));
        printf("rx_response.offset=%zu\n", offsetof(struct netif_rx_response, offset));
        printf("rx_response.flags=%zu\n", offsetof(struct netif_rx_response, flags));
        printf("rx_response.status=%zu\n", offsetof(struct netif_rx_response, status));
        printf("sring.req_event=%zu\n", offsetof(struct netif_tx_sring, req_event));
        printf("sring.rsp_prod=%zu\n", offsetof(struct netif_tx_sring, rsp_prod));
        printf("sring.rsp_event=%zu\n", offsetof(struct netif_tx_sring, rsp_event));
        printf("sring.ring=%zu\n", offsetof(struct netif_tx_sring, ring));
        for (int order = 0; order <= 4; order++) {
            printf("tx_ring_size.%d=%lu\n", order, (unsigned long)__CONST_RING_SIZE(netif_tx, 4096 << order));
            printf("rx_ring_size.%d=%lu\n", order, (unsigned long)__CONST_RING_SIZE(netif_rx, 4096 << order));
        }
        printf("rsp_okay=%d\nrsp_error=%d\nrsp_dropped=%d\nrsp_null=%d\n",
               NETIF_RSP_OKAY, NETIF_RSP_ERROR, NETIF_RSP_DROPPED, NETIF_RSP_NULL);
        printf("txf_more_data=%d\ntxf_extra_info=%d\nrxf_more_data=%d\nrxf_gso_prefix=%d\n",
               NETTXF_more_data, NETTXF_extra_info, NETRXF_more_data, NETRXF_gso_prefix);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "back")) {
        netif_tx_sring_t *s = map(argv[2]);
        netif_tx_back_ring_t b;
        BACK_RING_ATTACH(&b, s, s->rsp_prod, 4096);
        int more;
        do {
            while (RING_HAS_UNCONSUMED_REQUESTS(&b)) {
                netif_tx_request_t req;
                RING_COPY_REQUEST(&b, b.req_cons, &req);
                b.req_cons++;
                netif_tx_response_t *rsp = RING_GET_RESPONSE(&b, b.rsp_prod_pvt);
                rsp->id = req.id;
                rsp->status = (int16_t)((req.id * 2) % 7);
                b.rsp_prod_pvt++;
            }
            int notify;
            RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, notify);
            printf("notify=%d\n", notify);
            RING_FINAL_CHECK_FOR_REQUESTS(&b, more);
        } while (more);
        return 0;
    }
    if (argc >= 5 && !strcmp(argv[1], "front")) {
        netif_tx_sring_t *s = map(argv[2]);
        RING_IDX start = (RING_IDX)strtoul(argv[3], NULL, 0);
        unsigned n = (unsigned)strtoul(argv[4], NULL, 0);
        netif_tx_front_ring_t f;
        if (start == 0) {
            SHARED_RING_INIT(s);
            FRONT_RING_INIT(&f, s, 4096);
        } else {
            FRONT_RING_ATTACH(&f, s, start, 4096);
        }
        for (unsigned i = 0; i < n && !RING_FULL(&f); i++) {
            netif_tx_request_t *req = RING_GET_REQUEST(&f, f.req_prod_pvt);
            req->gref = 1000 + i; req->offset = 0; req->flags = 0; req->id = (uint16_t)i;
            req->size = (uint16_t)(60 + i);
            f.req_prod_pvt++;
        }
        int notify;
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, notify);
        printf("notify=%d\n", notify);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "reap")) {
        netif_tx_sring_t *s = map(argv[2]);
        netif_tx_front_ring_t f;
        RING_IDX start = (RING_IDX)strtoul(argv[3], NULL, 0);
        FRONT_RING_ATTACH(&f, s, start, 4096);
        f.req_prod_pvt = s->req_prod;
        while (RING_HAS_UNCONSUMED_RESPONSES(&f)) {
            netif_tx_response_t *rsp = RING_GET_RESPONSE(&f, f.rsp_cons);
            printf("rsp %u %d\n", rsp->id, rsp->status);
            f.rsp_cons++;
        }
        return 0;
    }
    fprintf(stderr, "usage: ring_peer abi|back FILE|front FILE START N|reap FILE START\n");
    return 2;
}
