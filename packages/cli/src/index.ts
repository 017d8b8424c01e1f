// @meridian/cli: meridian: the command-line tool
export {};
