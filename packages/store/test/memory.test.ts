import { MemoryBackend, MemoryStore } from '@meridian/store';
import { storeContract } from './contract.js';

storeContract('MemoryStore', async () => {
  const backend = new MemoryBackend();
  return {
    open: async (keyspace) => new MemoryStore({ keyspace, backend }),
    close: async () => backend.close(),
  };
});
