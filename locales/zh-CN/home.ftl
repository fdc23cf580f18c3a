# home：本区域页面的文字。各语言的键相同。
home-welcome = 欢迎，{ $name }
home-department = 部门
home-roles = 角色

home-col-record = 档案
home-col-kind = 类别
home-col-purpose = 用途
home-col-requester = 申请人
home-col-waiting = 已等待
home-col-borrower = 借阅人
home-col-approved-by = 审批人
home-col-latest-due = 最迟归还日期
home-col-due = 应还日期
home-col-status = 状态
home-col-state = 状态
home-col-asked = 申请时间

home-kind-lookup = 查询
home-kind-view = 调阅
home-kind-borrow = 借阅
home-kind-export = 导出
home-state-pending = 待审批
home-state-approved = 已批准
home-state-rejected = 已驳回
home-state-cancelled = 已撤回
home-state-expired = 已过期

home-approvals-title = 待您审批的申请
home-approvals-count = { $count ->
    [0] 没有待您审批的申请。
   *[other] 共 { $count } 项申请待您审批（最早的在前）：
}
home-decide = 审批
home-approvals-open = 打开审批队列

home-loans-title = 借阅台
home-ready-title = 待出借的档案
home-ready-none = 没有已批准待出借的档案。
home-due-title = 即将到期和逾期的借阅
home-due-none = 一周内没有到期的借阅。
home-overdue = 逾期
home-due-soon = 即将到期
home-loans-open = 打开借阅台

home-mine-title = 我的申请
home-mine-none = 您没有待审批或已批准的申请。
home-grants-title = 我有效的授权
home-grants-none = 您目前没有有效的授权。
home-time-left = 剩余 { $left }
home-open-viewer = 在阅览器中打开 { $name }

home-audit-title = 审计日志
home-chain-length = 审计链共有 { $count } 条事件。
home-chain-ok = 上次校验：至第 { $seq } 条完整无误（{ $when }，{ $name }）。
home-chain-broken = 上次校验：第 { $seq } 条处断裂（{ $when }，{ $name }）。
home-chain-never = 尚未在此校验过审计链。
home-recent-title = 最近的事件（不含逐页浏览）
home-audit-open = 打开审计日志

home-admin-title = 系统管理
home-accounts = 共 { $total } 个账户，其中 { $active } 个启用。
home-accounts-open = 管理账户
home-scrub-clean = 上次完整性巡检 { $when }：无异常，已校验 { $files } 个文件。
home-scrub-problems = 上次完整性巡检 { $when }：{ $damaged } 个损坏，{ $missing } 个缺失。
home-scrub-never = 尚未进行过完整性巡检。
home-scrub-open = 查看巡检结果
