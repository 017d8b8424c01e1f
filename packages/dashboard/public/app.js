// Meridian dashboard: Preact + htm as plain ES modules (no build step), data from /ui/api/* of the
// replica that served the page (GET only, with the session cookie).

import { useCallback, useEffect, useState } from '/ui/vendor/hooks.mjs';
import htm from '/ui/vendor/htm.mjs';
import { h, render } from '/ui/vendor/preact.mjs';

const html = htm.bind(h);

const PAGES = [
  ['mesh', 'Mesh'],
  ['proxies', 'Proxies'],
  ['graph', 'Services & graph'],
  ['config', 'Config'],
  ['policy', 'Policy'],
];

/** Set while this page logs out: the streams its logout ends do not navigate away before it is done. */
let loggingOut = false;

/** GET a dashboard API; a lost session sends the browser to the login page. */
async function api(path) {
  const res = await fetch(`/ui/api/${path}`, { credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 401 && !loggingOut) {
    location.assign(`/ui/login?next=${encodeURIComponent(location.pathname)}`);
    throw new Error('session ended');
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.message ?? `HTTP ${res.status}`);
  return body;
}

/**
 * A live view's data from the replica's server-sent events (`/ui/api/stream/<view>`): the state
 * follows each event; a stream ended by the server because the session is gone sends the browser to
 * the login page (through `api`, which sees the 401); a broken connection is retried by EventSource.
 */
function useLive(view) {
  const [state, setState] = useState({ data: undefined, error: undefined, at: undefined });
  useEffect(() => {
    const source = new EventSource(`/ui/api/stream/${view}`, { withCredentials: true });
    source.onmessage = (e) => setState({ data: JSON.parse(e.data), error: undefined, at: new Date() });
    source.addEventListener('failure', (e) => setState((s) => ({ ...s, error: JSON.parse(e.data).message })));
    source.addEventListener('end', () => {
      source.close();
      api('session').catch((e) => setState((s) => ({ ...s, error: e.message })));
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED)
        api('session').catch((e) => setState((s) => ({ ...s, error: e.message })));
      else setState((s) => ({ ...s, error: 'reconnecting to the replica…' }));
    };
    return () => source.close();
  }, [view]);
  return state;
}

/** Loads `path` now and every `everyMs` (0: once); reloads when `path` changes. */
function useApi(path, everyMs = 0) {
  const [state, setState] = useState({ data: undefined, error: undefined, at: undefined });
  useEffect(() => {
    if (!path) return undefined;
    let stopped = false;
    let timer;
    const load = async () => {
      try {
        const data = await api(path);
        if (!stopped) setState({ data, error: undefined, at: new Date() });
      } catch (e) {
        if (!stopped) setState((s) => ({ ...s, error: e.message }));
      }
      if (!stopped && everyMs > 0) timer = setTimeout(load, everyMs);
    };
    load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [path, everyMs]);
  return state;
}

function navigate(to) {
  history.pushState(null, '', to);
  window.dispatchEvent(new Event('meridian:navigate'));
}

function Link({ to, children, cls }) {
  return html`<a href=${to} class=${cls} onClick=${(e) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey) return;
    e.preventDefault();
    navigate(to);
  }}>${children}</a>`;
}

const age = (ms) =>
  ms === undefined || ms === null
    ? '—'
    : ms < 1000
      ? `${Math.round(ms)} ms`
      : ms < 120_000
        ? `${(ms / 1000).toFixed(1)} s`
        : ms < 7_200_000
          ? `${Math.round(ms / 60_000)} min`
          : `${(ms / 3_600_000).toFixed(1)} h`;

const ms = (v) => (v === undefined || v === null ? '' : `${v.toFixed(1)} ms`);

const until = (iso) => {
  if (!iso) return '—';
  const days = (Date.parse(iso) - Date.now()) / 86_400_000;
  return `${iso.slice(0, 19).replace('T', ' ')} UTC (${days >= 1 ? `${Math.floor(days)} days` : `${Math.round(days * 24)} h`} left)`;
};

function Command({ text }) {
  return html`<div class="command" data-testid="command"><span>Equivalent command</span><code>${String(text).replaceAll('<admin>', location.origin)}</code></div>`;
}

function Status({ ok, label }) {
  return html`<span class=${`dot ${ok ? 'ok' : 'bad'}`} title=${label}></span>`;
}

function Problem({ error }) {
  return error ? html`<p class="error" role="alert">${error}</p>` : null;
}

// ---- Mesh -------------------------------------------------------------------------------------
/** Replicas seen since the page loaded: one whose membership lease expired stays listed, in red. */
const seenReplicas = new Map();

function withDeparted(list) {
  const now = new Set(list.map((r) => r.id));
  for (const r of list) seenReplicas.set(r.id, r);
  const gone = [...seenReplicas.values()]
    .filter((r) => !now.has(r.id))
    .map((r) => ({
      ...r,
      reachable: false,
      status: undefined,
      error: 'left the membership (its lease expired)',
    }));
  return [...list, ...gone];
}

/**
 * The other clusters' replicas, grouped by cluster, as their convergence summaries over NATS report
 * them (never asked: their admin keys differ): leader, locality, load, store health.
 */
function RemoteReplicas({ list }) {
  if (list.length === 0) return null;
  const clusters = [...new Set(list.map((r) => r.clusterId))];
  return html`
    <h2>Other clusters' replicas <span class="small">(reported over federation, not asked)</span></h2>
    ${clusters.map(
      (c) => html`
      <h3>${c}</h3>
      <table data-testid="remote-replicas" data-cluster=${c}>
        <thead><tr><th>Replica</th><th>Cluster</th><th>Locality</th><th>Leader</th><th>Proxies (load)</th><th>Registrations</th><th>Store</th><th>Revision</th><th>Version</th></tr></thead>
        <tbody>${list
          .filter((r) => r.clusterId === c)
          .map((r) => {
            const s = r.status;
            return html`<tr data-remote-replica=${r.replicaId} data-cluster=${r.clusterId} data-source="federation">
              <td>${r.replicaId}</td>
              <td>${r.clusterId} <span class="small" title="reported by the replica over federation (NATS); not asked directly">(via federation, ${age(r.reportedAgoMs)} ago)</span></td>
              <td>${s ? s.locality || '—' : '—'}</td>
              <td>${s?.leader ? '★ leader' : ''}</td>
              <td>${s?.connections ?? '—'}</td>
              <td>${s?.registrations ?? '—'}</td>
              <td class=${s && !s.store.startsWith('ok') ? 'warn' : ''}>${s ? s.store : 'not reported (older version)'}</td>
              <td>${s?.snapshotRevision ?? '—'}</td>
              <td>${s?.version ?? '—'}</td>
            </tr>`;
          })}</tbody>
      </table>`,
    )}`;
}

function Mesh() {
  const { data, error, at } = useLive('mesh');
  if (!data) return html`<${Problem} error=${error} /><p class="loading">Loading…</p>`;
  data.replicas = withDeparted(data.replicas);
  const leader = data.leader?.leader;
  const fed = data.federation;
  const clusters = [...new Set(data.replicas.map((r) => r.clusterId))];
  return html`
    <${Command} text=${data.command} />
    <${Problem} error=${error} />
    <p class="small">Live (server-sent events, every 2 s): last at ${at?.toLocaleTimeString()}. Asked by replica <b>${data.self.id}</b>.</p>
    <section class="cards">
      <div class="card"><h3>Cluster</h3><p class="big">${clusters.join(', ')}</p><p>mesh ${data.self.meshId}</p></div>
      <div class="card"><h3>Leader</h3><p class="big" data-testid="leader">${leader ?? 'none'}</p><p>${data.leader?.terms?.length ?? 0} terms seen by this replica</p></div>
      <div class="card"><h3>Replicas</h3><p class="big">${data.replicas.filter((r) => r.reachable).length} / ${data.replicas.length} up</p></div>
      <div class="card" data-testid="ca"><h3>CA</h3>${
        data.ca.root || data.ca.chain
          ? html`<p>root expires ${until(data.ca.root)}</p><p>intermediate expires ${until(data.ca.chain)}</p>`
          : html`<p>no CA served by this replica (no --ca-address)</p>`
      }</div>
    </section>
    <h2>Replicas</h2>
    <table data-testid="replicas">
      <thead><tr><th></th><th>Replica</th><th>Cluster</th><th>Locality</th><th>Leader</th><th>Proxies (load)</th><th>Registrations</th><th>Store</th><th>Revision</th><th>Version</th><th>Admin</th><th>Answer</th></tr></thead>
      <tbody>${data.replicas.map(
        (
          r,
        ) => html`<tr class=${r.reachable ? 'up' : 'down'} data-replica=${r.id} data-state=${r.reachable ? 'up' : 'down'}>
          <td><${Status} ok=${r.reachable} label=${r.reachable ? 'answering' : 'not answering'} /></td>
          <td>${r.id}${r.id === data.self.id ? ' (this one)' : ''}</td>
          <td>${r.clusterId}</td><td>${r.locality ?? '—'}</td>
          <td>${r.id === leader ? '★ leader' : ''}</td>
          <td>${r.status?.connections ?? '—'}</td>
          <td>${r.status?.registrations ?? '—'}</td>
          <td class=${r.status?.store && !String(r.status.store).startsWith('ok') ? 'warn' : ''}>${r.status?.store ?? '—'}</td>
          <td>${r.status?.snapshotRevision ?? '—'}</td>
          <td>${r.version ?? r.status?.version ?? '—'}</td>
          <td><code>${r.adminAddress}</code></td>
          <td>${r.reachable ? `${r.answerMs} ms` : html`<span class="error">${r.error}</span>`}</td>
        </tr>`,
      )}</tbody>
    </table>
    <${RemoteReplicas} list=${data.remoteReplicas ?? []} />
    <h2>Federation</h2>
    ${
      !fed
        ? html`<p>Federation is off on this replica (no --nats-url).</p>`
        : html`<p>NATS ${fed.natsConnected ? 'connected' : 'not connected'}; exporting ${fed.exporting ? `${fed.exportedServices} services (this replica leads)` : 'no (another replica leads)'}; ${fed.importedServices} services imported.</p>
          <table data-testid="federation"><thead><tr><th></th><th>Remote cluster</th><th>Heartbeat age</th><th>Synced</th><th>Services</th><th>Epoch</th></tr></thead>
          <tbody>${(fed.remoteClusters ?? []).map(
            (c) =>
              html`<tr data-remote=${c.cluster} data-state=${c.stale ? 'stale' : 'live'}><td><${Status} ok=${!c.stale} label=${c.stale ? 'stale' : 'live'} /></td><td>${c.cluster}</td><td>${age(c.heardAgoMs)}</td><td>${c.synced ? 'yes' : 'no'}</td><td>${c.services}</td><td>${c.epoch}</td></tr>`,
          )}</tbody></table>`
    }`;
}

// ---- Proxies ----------------------------------------------------------------------------------
const TYPES = ['cds', 'lds', 'eds', 'rds'];

function lastAck(p) {
  if (p.lastAckAgeMs !== undefined) return p.lastAckAgeMs; // a remote row: one age, brought forward
  const ages = Object.values(p.types ?? {})
    .map((t) => t.lastAckAgeMs)
    .filter((a) => a !== undefined && a !== null);
  return ages.length ? Math.min(...ages) : undefined;
}

/** A proxy's name: a link to its effective config for this cluster's, plain text for another's. */
function ProxyName({ p }) {
  if (p.remote) return html`${p.name}`;
  return html`<${Link} to=${`/ui/config?proxy=${encodeURIComponent(p.proxyId)}&replica=${encodeURIComponent(p.replica)}`}>${p.name}</${Link}>`;
}

function Proxies() {
  const { data, error, at } = useLive('proxies');
  if (!data) return html`<${Problem} error=${error} /><p class="loading">Loading…</p>`;
  const c = data.convergence?.cluster;
  const others = (data.convergence?.mesh?.clusters ?? []).filter((m) => m.clusterId !== data.clusterId);
  const remote = data.remoteReplicas ?? [];
  return html`
    <${Command} text=${data.command} />
    <${Problem} error=${error} />
    <p class="small">Live (server-sent events, every 2 s): last at ${at?.toLocaleTimeString()}; asked replicas ${data.replicas.join(', ')}${
      remote.length
        ? html`; reported over federation (NATS) by ${remote.map((r) => `${r.replicaId} (${r.clusterId}, ${age(r.reportedAgoMs)} ago)`).join(', ')}`
        : null
    }.</p>
    ${data.errors.map((e) => html`<p class="error">replica ${e.replica} not asked: ${e.error}</p>`)}
    ${remote
      .filter((r) => r.omitted > 0)
      .map(
        (r) =>
          html`<p class="note" data-testid="omitted">${r.replicaId} (${r.clusterId}) reports ${r.listed} of its ${r.proxies} proxies (those behind first); ${r.omitted} not listed.</p>`,
      )}
    <div class="card wide" data-testid="convergence"><h3>Convergence of the latest revision</h3>
      <p class="big">${c?.summary ?? 'no convergence published yet'}</p>
      ${c?.behind?.length ? html`<p>Behind: ${c.behind.map((b) => `${b.proxy} (on ${b.replicaId}, holds ${b.holds ?? '?'})`).join(', ')}</p>` : null}
      ${others.map(
        (m) =>
          html`<p data-testid="convergence-cluster" data-cluster=${m.clusterId}>${m.clusterId} (over federation): ${m.summary}${
            m.behind?.length
              ? `; behind: ${m.behind.map((b) => `${b.proxy} (on ${b.replicaId})`).join(', ')}`
              : ''
          }</p>`,
      )}
      ${others.length ? html`<p class="small">Mesh: ${data.convergence.mesh.summary}</p>` : null}
    </div>
    <h2>${data.proxies.length} proxies</h2>
    <table data-testid="proxies"><thead><tr><th>Name</th><th>Cluster</th><th>Replica</th>${TYPES.map((t) => html`<th>${t.toUpperCase()}</th>`)}<th>Synced to</th><th>Last ACK</th><th>Kind</th><th>Problem</th></tr></thead>
    <tbody>${data.proxies.map(
      (
        p,
      ) => html`<tr data-proxy=${p.name} data-cluster=${p.clusterId} data-source=${p.remote ? 'federation' : 'member'}>
        <td><${ProxyName} p=${p} /></td>
        <td>${p.clusterId}${p.remote ? html` <span class="small" title="reported by its replica over federation (NATS); not asked directly">(via federation, ${age(p.remote.reportedAgoMs)} ago)</span>` : null}</td><td>${p.replica}</td>
        ${TYPES.map((t) => {
          const s = p.types?.[t]?.state ?? 'NOT SENT';
          return html`<td class=${`state ${s.toLowerCase().replace(/\s/g, '-')}`} title=${p.types?.[t]?.error ?? ''}>${s}</td>`;
        })}
        <td>${p.syncedVersion ?? '—'}${p.syncedAgeMs !== undefined ? html` <span class="small">(${age(p.syncedAgeMs)} ago)</span>` : null}</td>
        <td>${age(lastAck(p))}</td>
        <td>${p.kind} · ${p.variant}</td>
        <td class="error">${p.pushError ? `push failed at ${p.pushError.snapshotVersion}: ${p.pushError.message}` : p.pushFailed ? 'push failed (reported over federation)' : ''}</td>
      </tr>`,
    )}</tbody></table>`;
}

// ---- Services and graph -----------------------------------------------------------------------
function Graph() {
  const { data, error } = useLive('graph');
  const eps = useApi('endpoints', 0);
  if (!data) return html`<${Problem} error=${error} /><p class="loading">Loading…</p>`;
  const L = data.layout;
  return html`
    <${Command} text=${data.command} />
    <${Problem} error=${error} />
    ${data.absent || data.note ? html`<p class="note" data-testid="graph-note">${data.note}</p>` : null}
    ${data.graph ? html`<p class="small">${L.nodes.length} nodes, ${L.edges.length} edges over the last ${data.graph.windowSeconds ?? '?'} s (generated ${data.graph.generatedAt ?? ''}).</p>` : null}
    <svg class="graph" data-testid="graph" viewBox=${`0 0 ${L.width} ${L.height}`} width=${L.width} height=${L.height} role="img" aria-label="service graph">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrow" /></marker></defs>
      ${L.columns.map((c) => html`<text x=${c.x} y="24" class="column" text-anchor="middle">${c.namespace}</text>`)}
      ${L.edges.map((e) => {
        const dx = e.x2 - e.x1;
        const dy = e.y2 - e.y1;
        const len = Math.hypot(dx, dy) || 1;
        const r = 26;
        const x1 = e.x1 + (dx / len) * r;
        const y1 = e.y1 + (dy / len) * r;
        const x2 = e.x2 - (dx / len) * r;
        const y2 = e.y2 - (dy / len) * r;
        const bad = (e.errorRate ?? 0) > 0.05;
        return html`<g class=${`edge ${bad ? 'bad' : ''} ${e.mtls ? 'mtls' : ''}`} data-edge=${`${e.source}->${e.destination}`}>
          <line x1=${x1} y1=${y1} x2=${x2} y2=${y2} marker-end="url(#arrow)" />
          <text x=${(x1 + x2) / 2} y=${(y1 + y2) / 2 - 6} text-anchor="middle">${e.label}${e.mtls ? ' · mTLS' : ''}</text>
        </g>`;
      })}
      ${L.nodes.map(
        (n) => html`<g class=${`node ${n.kind}`} data-node=${n.id}>
          ${n.kind === 'service' ? html`<rect x=${n.x - 24} y=${n.y - 24} width="48" height="48" rx="8" />` : html`<circle cx=${n.x} cy=${n.y} r="24" />`}
          <text x=${n.x} y=${n.y + 40} text-anchor="middle">${n.name}</text>
          <text x=${n.x} y=${n.y + 54} text-anchor="middle" class="small">${n.cluster}</text>
        </g>`,
      )}
    </svg>
    ${
      data.graph && L.edges.length
        ? html`<table data-testid="edges"><thead><tr><th>From</th><th>To</th><th>Cluster</th><th>Protocol</th><th>rps</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th><th>mTLS</th></tr></thead>
      <tbody>${L.edges.map((e) => html`<tr><td>${e.source}</td><td>${e.destination}</td><td>${e.cluster ?? ''}</td><td>${e.protocol ?? ''}</td><td>${e.requestsPerSecond?.toFixed(2) ?? ''}</td><td>${e.errorRate !== undefined ? `${(e.errorRate * 100).toFixed(1)}%` : ''}</td><td>${ms(e.p50Ms)}</td><td>${ms(e.p90Ms)}</td><td>${ms(e.p99Ms)}</td><td>${e.mtls ? 'yes' : 'no'}</td></tr>`)}</tbody></table>`
        : null
    }
    <h2>Endpoints by service: mesh cluster, locality, health</h2>
    <${ServiceEndpoints} />
    <details class="eds" data-testid="eds"><summary>As given to one proxy (its EDS: priority and weight per locality)</summary>
    ${eps.data ? html`<${Command} text=${eps.data.command ?? 'meridian proxy-config endpoint <proxy>'} />` : null}
    <${Problem} error=${eps.error} />
    ${eps.data?.note ? html`<p class="note">${eps.data.note}</p>` : null}
    ${eps.data?.proxy ? html`<p class="small">As given to proxy ${eps.data.proxy} (on ${eps.data.replica}).</p>` : null}
    <div data-testid="endpoints">${(eps.data?.clusters ?? []).map(
      (c) =>
        html`<div class="service"><h3>${c.name}</h3>${
          c.localities.length === 0
            ? html`<p class="small">no endpoints</p>`
            : html`<table><thead><tr><th>Locality</th><th>Priority</th><th>Address</th><th>Weight</th><th>Health</th></tr></thead><tbody>${c.localities.flatMap(
                (l) =>
                  l.endpoints.map(
                    (e) =>
                      html`<tr><td>${l.locality}</td><td>${l.priority}</td><td>${e.address}</td><td>${e.weight ?? '—'}</td><td class=${`state ${e.health === 'HEALTHY' || e.health === 'UNKNOWN' ? 'synced' : 'error'}`}>${e.health}</td></tr>`,
                  ),
              )}</tbody></table>`
        }</div>`,
    )}</div></details>`;
}

const portsText = (ports) =>
  Object.entries(ports)
    .map(([n, p]) => `${n}:${p}`)
    .join(', ') || '—';

const healthText = (counts) =>
  Object.entries(counts)
    .map(([h, n]) => `${n} ${h.toLowerCase()}`)
    .join(', ') || 'no endpoints';

/**
 * Every service's endpoints from the replica's registry (local and imported through federation),
 * by mesh cluster and locality, with health; refreshed every 5 s.
 */
function ServiceEndpoints() {
  const { data, error } = useApi('services', 5000);
  const [filter, setFilter] = useState('');
  if (!data) return html`<${Problem} error=${error} /><p class="loading">Loading…</p>`;
  const links = new Map((data.remoteClusters ?? []).map((c) => [c.cluster, c]));
  const shown = data.services.filter((s) => !filter || s.hostname.includes(filter));
  return html`
    <${Command} text=${data.command} />
    <${Problem} error=${error} />
    ${data.note ? html`<p class="note">${data.note}</p>` : null}
    <p class="small">${data.services.length} services in the registry of this replica (revision ${data.revision}); endpoints of cluster ${data.clusterId} are local, the others imported through federation.
      <label> Filter <input value=${filter} onInput=${(e) => setFilter(e.target.value.trim())} placeholder="hostname" data-testid="service-filter" /></label></p>
    <div data-testid="services">${shown.map(
      (s) => html`<div class="service" data-service=${s.hostname}>
        <h3>${s.hostname} <span class="small">${s.ports.map((p) => `${p.name} ${p.port}/${p.protocol ?? '?'}`).join(', ')}${s.meshExternal ? ' · mesh external' : ''} · ${healthText(s.health)}</span></h3>
        ${
          s.clusters.length === 0
            ? html`<p class="small">no endpoints</p>`
            : html`<table><thead><tr><th>Cluster</th><th>Locality</th><th>Address</th><th>Ports</th><th>Network</th><th>Service account</th><th>Weight</th><th>Health</th></tr></thead><tbody>${s.clusters.flatMap(
                (c) => {
                  const link = links.get(c.cluster);
                  const origin = c.local
                    ? 'local'
                    : `imported${link ? (link.stale ? ', link stale' : ', link live') : ''}`;
                  return c.localities.flatMap((l) =>
                    l.endpoints.map(
                      (e) =>
                        html`<tr data-cluster=${c.cluster} data-endpoint=${e.address} data-health=${e.health}><td>${c.cluster} <span class="small">(${origin})</span></td><td>${l.locality}</td><td>${e.address}</td><td>${portsText(e.ports)}</td><td>${e.network || '—'}</td><td>${e.serviceAccount || '—'}</td><td>${e.weight}</td><td class=${`state ${e.health === 'HEALTHY' ? 'synced' : 'error'}`}>${e.health}</td></tr>`,
                    ),
                  );
                },
              )}</tbody></table>`
        }
      </div>`,
    )}</div>`;
}

// ---- Config -----------------------------------------------------------------------------------
function Config() {
  const params = new URLSearchParams(location.search);
  const [kind, setKind] = useState(params.get('kind') ?? '');
  const [ns, setNs] = useState(params.get('namespace') ?? '');
  const [proxy, setProxy] = useState(params.get('proxy') ?? '');
  const replica = params.get('replica') ?? '';
  const q = new URLSearchParams();
  if (kind) q.set('kind', kind);
  if (ns) q.set('namespace', ns);
  const { data, error } = useApi(`config?${q}`, 0);
  const dumpPath = proxy
    ? `config_dump?proxy=${encodeURIComponent(proxy)}${replica ? `&replica=${encodeURIComponent(replica)}` : ''}`
    : '';
  const dump = useApi(dumpPath, 0);
  const [open, setOpen] = useState('');
  const onProxy = useCallback((e) => {
    e.preventDefault();
    setProxy(new FormData(e.target).get('proxy').trim());
  }, []);
  if (!data) return html`<${Problem} error=${error} /><p class="loading">Loading…</p>`;
  return html`
    <${Command} text=${data.command} />
    <${Problem} error=${error} />
    <div class="filters">
      <label>Kind <select value=${kind} onChange=${(e) => setKind(e.target.value)} data-testid="kind">
        <option value="">all kinds</option>
        ${data.kinds.map((k) => html`<option value=${k.kind}>${k.kind} (${k.count})</option>`)}
      </select></label>
      <label>Namespace <select value=${ns} onChange=${(e) => setNs(e.target.value)}>
        <option value="">all namespaces</option>
        ${data.namespaces.map((n) => html`<option value=${n}>${n}</option>`)}
      </select></label>
    </div>
    <h2>Analysis</h2>
    ${
      data.warnings.length === 0
        ? html`<p data-testid="analysis">✔ No validation issues found (meridian analyze).</p>`
        : html`<ul class="warnings" data-testid="analysis">${data.warnings.map((w) => html`<li>Warning [${w.code}] ${w.object}: ${w.path ? `${w.path}: ` : ''}${w.message}</li>`)}</ul>`
    }
    <h2>${data.items.length} objects</h2>
    <table data-testid="objects"><thead><tr><th>Kind</th><th>Namespace</th><th>Name</th><th>Revision</th><th>Warnings</th></tr></thead>
    <tbody>${data.items.map((o) => {
      const key = `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
      return html`<tr data-object=${key} onClick=${() => setOpen(open === key ? '' : key)} class="clickable">
        <td>${o.kind}</td><td>${o.metadata.namespace}</td><td>${o.metadata.name}</td><td>${o.metadata.resourceVersion ?? ''}</td>
        <td class=${o.warnings.length ? 'warn' : ''}>${o.warnings.map((w) => w.code).join(', ')}</td></tr>
        ${open === key ? html`<tr><td colspan="5"><pre>${JSON.stringify(o.spec, null, 2)}</pre></td></tr>` : null}`;
    })}</tbody></table>
    <h2>Effective config of a proxy</h2>
    <${Command} text=${`meridian proxy-config cluster|listener|route|endpoint|secret ${proxy || '<proxy>'}`} />
    <form class="filters" onSubmit=${onProxy}>
      <label>Proxy (node id or pod.namespace) <input name="proxy" value=${proxy} size="60" /></label>
      <button type="submit">Show</button>
    </form>
    <${Problem} error=${proxy ? dump.error : undefined} />
    ${
      proxy && dump.data
        ? html`<p class="small">From replica ${dump.data.replica}; secrets are redacted by the replica.</p>
      ${Object.entries(dump.data.dump).map(
        ([conn, types]) =>
          html`<h3>Connection ${conn}</h3>${Object.entries(types).map(
            ([t, list]) =>
              html`<details data-testid=${`dump-${t}`}><summary>${t.toUpperCase()}: ${list.length} resources</summary><pre>${JSON.stringify(list, null, 2)}</pre></details>`,
          )}`,
      )}`
        : null
    }`;
}

// ---- Policy -----------------------------------------------------------------------------------
function Policy() {
  const params = new URLSearchParams(location.search);
  const [sel, setSel] = useState({
    namespace: params.get('namespace') ?? '',
    labels: params.get('labels') ?? '',
  });
  const path = sel.namespace
    ? `policy?namespace=${encodeURIComponent(sel.namespace)}&labels=${encodeURIComponent(sel.labels)}`
    : 'policy';
  const { data, error } = useApi(path, 0);
  const submit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    setSel({ namespace: f.get('namespace').trim(), labels: f.get('labels').trim() });
  };
  const pick = (w) =>
    setSel({
      namespace: w.namespace,
      labels: Object.entries(w.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    });
  const s = data?.selected;
  const group = (title, list) =>
    html`<h3>${title} (${list.length})</h3>${
      list.length === 0
        ? html`<p class="small">none</p>`
        : list.map(
            (
              p,
            ) => html`<div class="policy" data-policy=${`${p.namespace}/${p.name}`}><b>${p.namespace}/${p.name}</b> ${p.action}${p.dryRun ? ' (dry run)' : ''}
          ${p.rules.length === 0 ? html`<p class="small">no rules: ${p.action === 'ALLOW' ? 'matches nothing, so denies every request' : 'matches nothing'}</p>` : html`<pre>${JSON.stringify(p.rules, null, 2)}</pre>`}</div>`,
          )
    }`;
  return html`
    ${data ? html`<${Command} text=${data.command} />` : null}
    <${Problem} error=${error} />
    <form class="filters" onSubmit=${submit} data-testid="policy-form">
      <label>Namespace <input name="namespace" value=${sel.namespace} /></label>
      <label>Labels <input name="labels" value=${sel.labels} placeholder="app=reviews,version=v1" size="40" /></label>
      <button type="submit">Which policies apply?</button>
    </form>
    ${data?.workloads?.length ? html`<p class="small">Workloads: ${data.workloads.map((w) => html`<button class="chip" onClick=${() => pick(w)}>${w.namespace}/${w.name}</button> `)}</p>` : null}
    ${
      s
        ? html`<section data-testid="policy-result"><p class="big">${s.verdict}</p>
      <p class="small">Evaluated in order CUSTOM, AUDIT, DENY, ALLOW; policies of the root namespace ${data.rootNamespace} apply mesh-wide.</p>
      ${group('CUSTOM', s.custom)}${group('AUDIT', s.audit)}${group('DENY', s.deny)}${group('ALLOW', s.allow)}</section>`
        : null
    }
    <h2>All AuthorizationPolicies</h2>
    ${
      data
        ? html`<table data-testid="policies"><thead><tr><th>Namespace</th><th>Name</th><th>Action</th><th>Selector</th></tr></thead><tbody>${data.policies.map(
            (p) =>
              html`<tr><td>${p.namespace}</td><td>${p.name}</td><td>${p.action}</td><td>${
                p.selector
                  ? Object.entries(p.selector)
                      .map(([k, v]) => `${k}=${v}`)
                      .join(', ')
                  : p.namespace === data.rootNamespace
                    ? '(every workload of the mesh: root namespace)'
                    : '(every workload of the namespace)'
              }</td></tr>`,
          )}</tbody></table>`
        : null
    }`;
}

// ---- Shell ------------------------------------------------------------------------------------
const VIEWS = { mesh: Mesh, proxies: Proxies, graph: Graph, config: Config, policy: Policy };

function currentPage() {
  const p = location.pathname.replace(/^\/ui\/?/, '').replace(/\/$/, '');
  return VIEWS[p] ? p : 'mesh';
}

function App() {
  const [page, setPage] = useState(currentPage());
  const [key, setKey] = useState(0);
  const session = useApi('session', 0);
  useEffect(() => {
    const on = () => {
      setPage(currentPage());
      setKey((k) => k + 1);
    };
    window.addEventListener('popstate', on);
    window.addEventListener('meridian:navigate', on);
    return () => {
      window.removeEventListener('popstate', on);
      window.removeEventListener('meridian:navigate', on);
    };
  }, []);
  const [logoutError, setLogoutError] = useState('');
  /** Revokes the session on the server (every replica refuses it then) and goes to the login page. */
  const logout = async () => {
    loggingOut = true;
    const res = await fetch('/ui/logout', { method: 'POST', credentials: 'same-origin' }).catch((e) => ({
      ok: false,
      json: async () => ({ message: e.message }),
    }));
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      loggingOut = false;
      setLogoutError(`Logout failed: ${body.message ?? 'no answer'}`);
      return;
    }
    location.assign('/ui/login');
  };
  const View = VIEWS[page];
  const title = PAGES.find(([p]) => p === page)[1];
  document.title = `Meridian · ${title}`;
  return html`
    <header>
      <span class="brand">Meridian</span>
      <nav>${PAGES.map(([p, label]) => html`<${Link} to=${`/ui/${p}`} cls=${p === page ? 'active' : ''}>${label}</${Link}>`)}</nav>
      <span class="who">${session.data ? html`${session.data.subject.replace(/^spiffe:\/\/[^/]+\/ns\/[^/]+\/sa\//, '')} (${session.data.roles.join(', ') || 'no role'}) · ${session.data.clusterId}/${session.data.replica}` : ''}
        <button class="link" onClick=${logout}>Log out</button></span>
    </header>
    <main data-page=${page}><${Problem} error=${logoutError} /><h1>${title}</h1><${View} key=${key} /></main>`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
