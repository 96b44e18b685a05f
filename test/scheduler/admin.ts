import { requester } from './helpers.js';

/** The admin every scheduler test configures as `admins: { userIds: ['root'] }`. */
export const admin = requester('root');
