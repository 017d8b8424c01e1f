/** Istio `ServiceEntry` and `WorkloadEntry` (networking.istio.io): services and endpoints declared by config. */
import type { NetworkingWorkloadSelector, StringMap } from './common.js';

/** Istio `ServicePort` (ServiceEntry ports). */
export interface ServicePort {
  number?: number;
  protocol?: string;
  name?: string;
  targetPort?: number;
}

/** Istio `WorkloadEntry` spec (also a ServiceEntry endpoint). */
export interface WorkloadEntry {
  address?: string;
  ports?: Record<string, number>;
  labels?: StringMap;
  network?: string;
  locality?: string;
  weight?: number;
  serviceAccount?: string;
}

/** Istio `ServiceEntry` spec. */
export interface ServiceEntry {
  hosts?: string[];
  addresses?: string[];
  ports?: ServicePort[];
  location?: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  resolution?: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
  endpoints?: WorkloadEntry[];
  workloadSelector?: NetworkingWorkloadSelector;
  exportTo?: string[];
  subjectAltNames?: string[];
}
