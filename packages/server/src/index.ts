// @meridian/server: meridiand: the control-plane replica process
export {};
