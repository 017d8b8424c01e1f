// What a simulated sidecar of the `mesh` benchmark reads from xDS responses, without decoding them:
// the EDS names of clusters, the RDS names of listeners and the endpoint weights of a load
// assignment, by walking protobuf fields (a plain loop, no generators or allocation per field).

/** Calls `each(field, wire, start, end, value)` for every field of buf[start, end): length-delimited
 * fields give their bytes' range, varints their value. Stops early when `each` returns true. */
export function walk(
  buf: Uint8Array,
  start: number,
  end: number,
  each: (field: number, wire: number, s: number, e: number, value: number) => boolean | undefined,
): void {
  let i = start;
  const varint = (): number => {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++];
      if (b === undefined) throw new Error('truncated varint');
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  };
  while (i < end) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) {
      if (each(field, 0, i, i, varint())) return;
    } else if (wire === 2) {
      const len = varint();
      const s = i;
      i += len;
      if (i > end) throw new Error('truncated field');
      if (each(field, 2, s, i, len)) return;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

const utf8 = new TextDecoder();
const text = (buf: Uint8Array, s: number, e: number): string => utf8.decode(buf.subarray(s, e));

/** Each resource's `Any.value` range in a SotW DiscoveryResponse, and its top-level fields. */
export interface SotwView {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  /** [start, end) of each resource's encoded message in the response buffer. */
  resources: number[];
}

export function readSotw(buf: Uint8Array): SotwView {
  const view: SotwView = { versionInfo: '', typeUrl: '', nonce: '', resources: [] };
  walk(buf, 0, buf.length, (f, w, s, e) => {
    if (w !== 2) return;
    if (f === 1) view.versionInfo = text(buf, s, e);
    else if (f === 4) view.typeUrl = text(buf, s, e);
    else if (f === 5) view.nonce = text(buf, s, e);
    else if (f === 2)
      walk(buf, s, e, (af, aw, as, ae) => {
        if (af === 2 && aw === 2) view.resources.push(as, ae);
        return undefined;
      });
    return undefined;
  });
  return view;
}

const CLUSTER_TYPE_EDS = 3;

/** The EDS service name of a Cluster (its `eds_cluster_config.service_name`, else its name), or
 * undefined when the cluster is not of type EDS. */
export function clusterEdsName(buf: Uint8Array, s: number, e: number): string | undefined {
  let name = '';
  let service = '';
  let type = 0;
  walk(buf, s, e, (f, w, fs, fe, v) => {
    if (f === 1 && w === 2) name = text(buf, fs, fe);
    else if (f === 2 && w === 0) type = v;
    else if (f === 3 && w === 2)
      walk(buf, fs, fe, (ef, ew, es, ee) => {
        if (ef === 2 && ew === 2) service = text(buf, es, ee);
        return undefined;
      });
    return undefined;
  });
  return type === CLUSTER_TYPE_EDS ? service || name : undefined;
}

const HCM = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/** Adds to `out` the route configuration names a Listener's HTTP connection managers fetch by RDS. */
export function listenerRdsNames(buf: Uint8Array, s: number, e: number, out: Set<string>): void {
  const chain = (cs: number, ce: number) =>
    walk(buf, cs, ce, (f, w, fs, fe) => {
      if (f !== 3 || w !== 2) return undefined; // FilterChain.filters
      walk(buf, fs, fe, (ff, fw, ts, te) => {
        if (ff !== 4 || fw !== 2) return undefined; // Filter.typed_config (Any)
        let isHcm = false;
        walk(buf, ts, te, (af, aw, as, ae) => {
          if (af === 1 && aw === 2) isHcm = text(buf, as, ae).endsWith(HCM);
          else if (af === 2 && aw === 2 && isHcm)
            walk(buf, as, ae, (hf, hw, hs, he) => {
              if (hf !== 3 || hw !== 2) return undefined; // HttpConnectionManager.rds
              walk(buf, hs, he, (rf, rw, rs, re) => {
                if (rf === 2 && rw === 2) out.add(text(buf, rs, re)); // Rds.route_config_name
                return undefined;
              });
              return undefined;
            });
          return undefined;
        });
        return undefined;
      });
      return undefined;
    });
  walk(buf, s, e, (f, w, fs, fe) => {
    if ((f === 3 || f === 25) && w === 2) chain(fs, fe); // filter_chains, default_filter_chain
    return undefined;
  });
}

/** A ClusterLoadAssignment's cluster name. */
export function loadAssignmentName(buf: Uint8Array, s: number, e: number): string {
  let name = '';
  walk(buf, s, e, (f, w, fs, fe) => {
    if (f === 1 && w === 2) {
      name = text(buf, fs, fe);
      return true;
    }
    return undefined;
  });
  return name;
}

/** The largest `load_balancing_weight` of any endpoint of a ClusterLoadAssignment (0 if none). */
export function maxEndpointWeight(buf: Uint8Array, s: number, e: number): number {
  let max = 0;
  walk(buf, s, e, (f, w, ls, le) => {
    if (f !== 2 || w !== 2) return undefined; // endpoints (LocalityLbEndpoints)
    walk(buf, ls, le, (lf, lw, bs, be) => {
      if (lf !== 2 || lw !== 2) return undefined; // lb_endpoints (LbEndpoint)
      walk(buf, bs, be, (bf, bw, ws, we) => {
        if (bf !== 4 || bw !== 2) return undefined; // load_balancing_weight (UInt32Value)
        walk(buf, ws, we, (vf, vw, _s, _e, v) => {
          if (vf === 1 && vw === 0 && v > max) max = v;
          return undefined;
        });
        return undefined;
      });
      return undefined;
    });
    return undefined;
  });
  return max;
}
