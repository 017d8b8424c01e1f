// What several scenarios observe: a metric summed over the mesh's replicas.
import type { Mesh } from '../lib/mesh.js';

/** Sum of a counter over every replica of the mesh (their monitoring ports). */
export async function metricSum(mesh: Mesh, name: string): Promise<number> {
  let sum = 0;
  for (const c of mesh.plan.clusters)
    for (const r of c.replicaPorts) {
      const text = await fetch(`http://127.0.0.1:${r.monitoring}/metrics`, {
        signal: AbortSignal.timeout(5000),
      }).then((res) => res.text());
      for (const line of text.split('\n'))
        if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(' ').at(-1));
    }
  return sum;
}
