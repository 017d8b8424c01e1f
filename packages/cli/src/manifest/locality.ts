// The locality init container of meridiand's pods: it reads the topology labels of its pod's Node
// (the only Kubernetes API call of a replica's pod) and writes them where meridiand reads its locality.
/** Where the locality init container writes `{"locality": "region/zone"}` for meridiand. */
export const LOCALITY_FILE = '/var/run/meridian/locality.yaml';

/**
 * The locality init container's program (run with the image's node): GET the pod's Node with a
 * short-lived projected token, write `region/zone` (or what of it is labelled) for meridiand.
 */
export const LOCALITY_SCRIPT = [
  "const fs=require('fs'),https=require('https'),e=process.env;",
  "const dir=e.TOKEN_DIR||'/var/run/secrets/kubernetes.io/serviceaccount';",
  `const out=(l)=>{fs.writeFileSync(e.LOCALITY_FILE||'${LOCALITY_FILE}',JSON.stringify({locality:l})+'\\n');console.log('locality: '+(l||'(none)'));};`,
  'https.get({host:e.KUBERNETES_SERVICE_HOST,port:e.KUBERNETES_SERVICE_PORT,',
  "path:'/api/v1/nodes/'+encodeURIComponent(e.NODE_NAME),ca:fs.readFileSync(dir+'/ca.crt'),",
  "headers:{authorization:'Bearer '+fs.readFileSync(dir+'/token','utf8').trim()}},(res)=>{let b='';",
  "res.on('data',(c)=>b+=c);res.on('end',()=>{if(res.statusCode!==200){console.error('node lookup: HTTP '+res.statusCode);out('');return;}",
  "const l=JSON.parse(b).metadata.labels||{},r=l['topology.kubernetes.io/region'],z=l['topology.kubernetes.io/zone'];",
  "out(r?(z?r+'/'+z:r):'');});})",
  ".on('error',(err)=>{console.error('node lookup: '+err.message);out('');});",
].join('');
