// @meridian/server: meridiand, the control-plane replica process. `src/main.ts` is the command; this
// module exports only what other packages use: the replica and its settings (to run one in a test or
// embed it) and the admission review (which `meridian manifest` wires into a cluster). Tests inside
// this package import the file they test.

export type {
  AdmissionContext,
  AdmissionResponse,
  AdmissionReviewAnswer,
  AdmissionWebhookOptions,
} from './admission.js';
export { reviewAdmission, startAdmissionWebhook } from './admission.js';
export type { ServerOptions } from './options.js';
export { resolveOptions, usage } from './options.js';
export type { GrpcExtension, ReplicaStartOptions } from './replica.js';
export { Replica } from './replica.js';
