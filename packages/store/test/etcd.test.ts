import { EtcdStore } from '@meridian/store';
import { startEtcd } from '@meridian/testkit';
import { storeContract } from './contract.js';

storeContract('EtcdStore (single etcd member)', async () => {
  const etcd = await startEtcd();
  return {
    open: (keyspace) => EtcdStore.connect({ endpoints: etcd.endpoints, keyspace }),
    close: () => etcd.stop(),
  };
});
